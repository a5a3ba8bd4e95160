import { readFileSync } from 'node:fs';
import Module from 'node:module';
import { dirname } from 'node:path';

/** Replaces each exact piece of `source` with its new text; throws if a piece is not there exactly once. */
export function applyEdits(fix: string, source: string, edits: [string, string][]): string {
  let patched = source;
  for (const [from, to] of edits) {
    if (patched.split(from).length !== 2)
      throw new Error(`kafkajs-fixes/${fix}: kafkajs is not the version this fix was written for`);
    patched = patched.replace(from, () => to);
  }
  return patched;
}

/**
 * Compiles a kafkajs module from patched source into Node's module cache, so that kafkajs loads it instead of the
 * file. Must run before kafkajs itself is loaded (`@app/kafka` loads every fix first).
 */
export function replaceKafkajsModule(fix: string, modulePath: string, patch: (source: string) => string): void {
  if (require.cache[require.resolve('kafkajs/src/producer')] || require.cache[modulePath]) {
    throw new Error(`kafkajs-fixes/${fix} must be loaded before kafkajs (import @app/kafka first)`);
  }
  const patched = new Module(modulePath, module);
  patched.filename = modulePath;
  patched.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(
    dirname(modulePath),
  );
  (patched as unknown as { _compile(source: string, filename: string): void })._compile(
    patch(readFileSync(modulePath, 'utf8')),
    modulePath,
  );
  patched.loaded = true;
  require.cache[modulePath] = patched;
}
