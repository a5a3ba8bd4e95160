import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Requests that Node's HTTP parser refuses before any route sees them (malformed request line, headers over
 * the limit) would get a bare status line; clients get a Matrix error in JSON instead.
 */
export function answerClientErrorsWithJson(server: Server): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    const status = tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request';
    const body = JSON.stringify(
      tooLarge
        ? { errcode: 'M_TOO_LARGE', error: 'Request headers too large' }
        : { errcode: 'M_UNKNOWN', error: 'Malformed HTTP request' },
    );
    socket.end(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nAccess-Control-Allow-Origin: *\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
