import { registerDecorator, ValidationOptions } from 'class-validator';
import { isEventType, isRoomId, isTxnId, MAX_IDENTIFIER_BYTES } from '@app/matrix';

/** Marks a constraint whose violation is a size problem (413 M_TOO_LARGE) rather than a bad value (400). */
export const TOO_LARGE = { context: { tooLarge: true } } as const;

function Matches(name: string, test: (value: string) => boolean, message: string, options?: ValidationOptions) {
  return (target: object, propertyName: string): void =>
    registerDecorator({
      name,
      target: target.constructor,
      propertyName,
      options: { message, ...options },
      validator: { validate: (value: unknown) => typeof value === 'string' && test(value) },
    });
}

const MaxBytes = (max: number) =>
  Matches('maxBytes', (v) => Buffer.byteLength(v, 'utf8') <= max, `$property is longer than ${max} bytes`, TOO_LARGE);

/** The path parameters of `PUT /rooms/{roomId}/send/{eventType}/{txnId}`, already URL-decoded by the router. */
export class SendParams {
  @Matches('roomId', isRoomId, 'roomId is not a valid room ID')
  @MaxBytes(MAX_IDENTIFIER_BYTES) // below, so it is checked first: an over-long ID is 413, not 400
  roomId!: string;

  @Matches('eventType', isEventType, 'eventType is not a valid event type')
  @MaxBytes(MAX_IDENTIFIER_BYTES)
  eventType!: string;

  @Matches('txnId', isTxnId, 'txnId must be 1 to 255 bytes')
  txnId!: string;
}
