/** The repository's root folder. */
export declare const ROOT: string;
/** Why dist/ is older than src/ (the first such file), or undefined when it is fresh. */
export declare function distStaleness(): string | undefined;
