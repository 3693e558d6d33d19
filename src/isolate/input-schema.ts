/**
 * An entry script's `inputSchema` (JSON Schema) checks `data` before `run`: a bad item is answered with
 * the schema's own words, and the script only ever sees data of the shape it declared.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { ScoringError } from '../errors.js';

const ajv = new Ajv({ allErrors: false, strict: false });
const compiled = new WeakMap<object, ValidateFunction>();

export function validateSchema(value: unknown, schema: object): void {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return;
  const e = validate.errors?.[0];
  const where = e?.instancePath ? `data${e.instancePath}` : 'data';
  throw new ScoringError('SCHEMA', `${where} ${e?.message ?? 'does not match the inputSchema'}`);
}
