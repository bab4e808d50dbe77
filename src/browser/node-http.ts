/**
 * The browser build's stand-in for `node:http` (scripts/build-browser.mjs):
 * Binary HTTP's Response conversion reads reason phrases from it; a browser
 * Response does without one.
 * @module
 */
export const STATUS_CODES: Record<number, string | undefined> = {};
