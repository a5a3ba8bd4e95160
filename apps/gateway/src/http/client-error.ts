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
    const [status, answer] =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? ['431 Request Header Fields Too Large', { errcode: 'M_TOO_LARGE', error: 'Request headers too large' }]
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? ['408 Request Timeout', { errcode: 'M_UNKNOWN', error: 'Request not received in time' }]
          : ['400 Bad Request', { errcode: 'M_UNKNOWN', error: 'Malformed HTTP request' }];
    const body = JSON.stringify(answer);
    socket.end(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nAccess-Control-Allow-Origin: *\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
