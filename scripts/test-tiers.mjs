// The test tiers in one place (README, "Tests"). The fast tier is what `npm test`
// runs; every other folder under test/ (but helpers) is a slow suite with an npm
// script `test:<folder>` that .ci/run runs (test/unit/test-tiers.test.ts checks it).
export const FAST_TIER = ['test/unit', 'test/vectors', 'test/pair', 'test/fuzz', 'test/bindings'];
/** Folders under test/ that hold no suite of their own. */
export const NOT_SUITES = ['test/helpers'];
