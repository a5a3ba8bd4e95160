import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLError } from 'yaml';

/**
 * A YAML (or JSON) file's document. Throws an Error naming where parsing failed (`line 3, column 7: BAD_INDENT`)
 * and never what is there: the YAML parser's own message quotes the file, which holds tokens.
 */
export function readYamlFile(path: string): unknown {
  const text = readFileSync(path, 'utf8');
  try {
    return parseYaml(text);
  } catch (error) {
    if (!(error instanceof YAMLError)) throw error;
    const at = error.linePos?.[0];
    // No `cause`: the parser's error quotes the file, and a cause gets printed along with the error.
    // eslint-disable-next-line preserve-caught-error
    throw new Error(
      `not valid YAML at ${at ? `line ${at.line}, column ${at.col}` : `offset ${error.pos[0]}`}: ${error.code}`,
    );
  }
}
