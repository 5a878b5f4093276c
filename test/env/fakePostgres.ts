// A hostile "PostgreSQL server" on 127.0.0.1 that speaks just enough of the protocol to ask a client for its
// password the weak way (cleartext or MD5) and record every byte the client sends. It proves, from the wire,
// whether a client gave its password away. It declines TLS ('N'), as a plaintext impostor would.
import net from 'node:net';
import { freePort } from './processes.js';

const SSL_REQUEST_CODE = 80877103;

export type WeakAuthentication = 'password' | 'md5';

export interface RecordedConnection {
  /** Everything the client sent, in order (SSLRequest, StartupMessage, and whatever followed). */
  received: Buffer;
  /** Bytes sent after the server asked for the password: a PasswordMessage ('p') if the client answered. */
  afterAuthenticationRequest: Buffer;
}

export class FakePostgresServer {
  readonly connections: RecordedConnection[] = [];
  port = 0;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly ask: WeakAuthentication) {}

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(this.port, '127.0.0.1', resolve);
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Whether any connection sent a PasswordMessage ('p'), or any byte at all, after the password request. */
  get answeredPasswordRequest(): boolean {
    return this.connections.some((c) => c.afterAuthenticationRequest.length > 0);
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const record: RecordedConnection = { received: Buffer.alloc(0), afterAuthenticationRequest: Buffer.alloc(0) };
    this.connections.push(record);
    let pending = Buffer.alloc(0);
    let asked = false;
    socket.on('data', (chunk: Buffer) => {
      record.received = Buffer.concat([record.received, chunk]);
      if (asked) {
        // Recorded, then the impostor hangs up: it has what it came for.
        record.afterAuthenticationRequest = Buffer.concat([record.afterAuthenticationRequest, chunk]);
        socket.destroy();
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      // Untyped messages before authentication: int32 length (itself included), int32 code, body.
      while (!asked && pending.length >= 8 && pending.length >= pending.readInt32BE(0)) {
        const length = pending.readInt32BE(0);
        const code = pending.readInt32BE(4);
        pending = pending.subarray(length);
        if (code === SSL_REQUEST_CODE) {
          socket.write('N');
          continue;
        }
        asked = true;
        socket.write(this.authenticationRequest());
      }
    });
  }

  private authenticationRequest(): Buffer {
    if (this.ask === 'password') {
      const msg = Buffer.alloc(9);
      msg.write('R', 0);
      msg.writeInt32BE(8, 1);
      msg.writeInt32BE(3, 5); // AuthenticationCleartextPassword
      return msg;
    }
    const msg = Buffer.alloc(13);
    msg.write('R', 0);
    msg.writeInt32BE(12, 1);
    msg.writeInt32BE(5, 5); // AuthenticationMD5Password
    Buffer.from([1, 2, 3, 4]).copy(msg, 9); // salt
    return msg;
  }
}
