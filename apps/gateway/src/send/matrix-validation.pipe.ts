import { ArgumentMetadata, Injectable, PipeTransform } from '@nestjs/common';
import { validateSync, ValidationError } from 'class-validator';
import { invalidParam, MatrixError, tooLarge } from '@app/matrix';

/**
 * class-validator for path and query DTOs, answering with Matrix errors. Lighter than Nest's ValidationPipe:
 * the parameters are plain strings, so there is nothing for class-transformer to do on the hot path.
 */
@Injectable()
export class MatrixValidationPipe implements PipeTransform {
  transform(value: unknown, metadata: ArgumentMetadata): unknown {
    const type = metadata.metatype;
    if (!type || type === String || type === Object || typeof value !== 'object' || value === null) return value;
    const instance = Object.assign(Object.create(type.prototype as object) as object, value);
    const errors = validateSync(instance, { stopAtFirstError: true });
    if (errors.length > 0) throw toMatrixError(errors[0]);
    return instance;
  }
}

function toMatrixError(error: ValidationError): MatrixError {
  const message = Object.values(error.constraints ?? {})[0] ?? `${error.property} is invalid`;
  const isSize = Object.values(error.contexts ?? {}).some((context) => (context as { tooLarge?: boolean }).tooLarge);
  return isSize ? tooLarge(message) : invalidParam(message);
}
