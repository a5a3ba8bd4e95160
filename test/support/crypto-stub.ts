/**
 * Stands in for @matrix-org/matrix-sdk-crypto-nodejs in the SDK tests (see bot-sdk.ts). Anything may be read
 * from it; calling or constructing anything throws, so a test that did use encryption would fail loudly.
 */
const unavailable = (): never => {
  throw new Error('end-to-end encryption is not available in these tests (matrix-sdk-crypto-nodejs is stubbed)');
};

function stub(path: string): unknown {
  return new Proxy(unavailable, {
    get: (_target, property) =>
      property === '__esModule' ? false : typeof property === 'symbol' ? undefined : stub(`${path}.${property}`),
    apply: unavailable,
    construct: unavailable,
  });
}

module.exports = stub('matrix-sdk-crypto-nodejs');
