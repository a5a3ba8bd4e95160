import { registerHooks } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * matrix-bot-sdk requires its end-to-end-encryption engine, a native module whose binary a postinstall script
 * downloads (which cannot happen on these machines, and which npm here does not run), as soon as the SDK is
 * loaded. These tests use no encryption, so that one module resolves to a stub that fails if it is ever called.
 */
registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === '@matrix-org/matrix-sdk-crypto-nodejs') {
      return { url: pathToFileURL(join(__dirname, 'crypto-stub.js')).href, format: 'commonjs', shortCircuit: true };
    }
    return nextResolve(specifier, context);
  },
});

// eslint-disable-next-line @typescript-eslint/no-require-imports -- must load after the hook above is in place
export const botSdk = require('@vector-im/matrix-bot-sdk') as typeof import('@vector-im/matrix-bot-sdk');
