// Behaviour docs/protocol.md promises a client author, checked on live gateways: the HTTP publish
// API (section 9) status by status, 403 without Origin under allowedOrigins and 431 for oversized
// headers (section 1), a bearer.<jwt> subprotocol offered alone (section 1: 426), and what each message
// type does with id 0 (section 3, "id 0").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request, maxHeaderSize, type IncomingHttpHeaders } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { connect, rejectedUpgrade, startGateway, type Client, type Started } from './helpers.js';
import { MemoryBroker, type Broker } from '../src/index.js';

interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

/** One HTTP request on its own connection. `body` as an array of chunks is sent chunked. */
function http(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer | Buffer[]): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const chunks = Array.isArray(body) ? body : body === undefined ? [] : [Buffer.from(body)];
    const h: Record<string, string | number> = { ...headers };
    if (!Array.isArray(body) && body !== undefined) h['content-length'] = chunks[0].length;
    const req = request(`${base}${path}`, { method, headers: h, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json: unknown = undefined;
        try {
          json = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    // the server may answer (413) and close before the whole body is written
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    for (const c of chunks) req.write(c);
    req.end();
  });
}

const KEY = 'publish-key-for-tests';
const JSON_TYPE = { 'content-type': 'application/json' };
const bearer = (k = KEY) => ({ authorization: `Bearer ${k}` });

async function started(t: { after: (fn: () => unknown) => void }, options: Parameters<typeof startGateway>[0] = {}): Promise<Started> {
  const s = await startGateway(options);
  t.after(() => s.gw.close());
  return s;
}

async function client(t: { after: (fn: () => unknown) => void }, url: string, protocols: string | string[] = 'wiregate.v1', opts: WebSocket.ClientOptions = {}): Promise<Client> {
  const c = await connect(url, protocols, opts);
  t.after(() => c.close());
  return c;
}

/** Raw frames as they arrive (the helper Client decodes them). */
function rawFrames(c: Client): string[] {
  const frames: string[] = [];
  c.ws.on('message', (d: Buffer) => frames.push(d.toString('hex')));
  return frames;
}

// ---- section 9: HTTP publish API --------------------------------------------------------------

test('HTTP publish: 200 {"seq": n}, delivered as MESSAGE, one sequence with WebSocket publishes', async (t) => {
  const s = await started(t, { httpPublish: { apiKey: KEY } });
  const sub = await client(t, s.url);
  assert.deepEqual(await sub.subscribe('alerts/#'), [16, 1]);

  const a = await http(s.http, 'POST', '/v1/publish', { ...bearer(), ...JSON_TYPE }, '{"topic": "alerts/fire", "payload": {"level": 3}}');
  assert.equal(a.status, 200);
  assert.equal(a.headers['content-type'], 'application/json');
  assert.deepEqual(a.json, { seq: 1 });
  assert.deepEqual(await sub.delivery('alerts/fire'), [18, 'alerts/fire', 1, { level: 3 }]);

  // X-Api-Key, a query string, Content-Type parameters, extra keys, a null payload
  const b = await http(s.http, 'POST', '/v1/publish?x=1', { 'x-api-key': KEY, 'content-type': 'application/json; charset=utf-8' }, '{"topic": "alerts/fire", "payload": null, "extra": true}');
  assert.deepEqual([b.status, b.json], [200, { seq: 2 }]);
  assert.deepEqual(await sub.delivery('alerts/fire'), [18, 'alerts/fire', 2, null]);

  // a WebSocket PUBLISH continues the same sequence
  assert.deepEqual(await sub.publish('alerts/fire', 'ws'), [16, 2, 3]);
  assert.deepEqual(await sub.delivery('alerts/fire'), [18, 'alerts/fire', 3, 'ws']);
});

test('HTTP publish: every msgpack content type; the payload is re-encoded (float32 -> float64, integer map keys -> strings, JSON numbers)', async (t) => {
  const s = await started(t, { httpPublish: { apiKey: KEY } });
  const sub = await client(t, s.url);
  const frames = rawFrames(sub);
  await sub.subscribe('m/#');
  // {"topic": "m/x", "payload": {1: float32 1.5}} written by hand: msgpackr would not produce these forms
  const body = Buffer.from('82' + 'a5746f706963' + 'a36d2f78' + 'a77061796c6f6164' + '81' + '01' + 'ca3fc00000', 'hex');
  let seq = 0;
  for (const type of ['application/msgpack', 'application/x-msgpack', 'application/vnd.msgpack']) {
    const a = await http(s.http, 'POST', '/v1/publish', { 'x-api-key': KEY, 'content-type': type }, body);
    assert.deepEqual([a.status, a.json], [200, { seq: ++seq }], type);
    await sub.delivery('m/x');
    // MESSAGE [18, "m/x", seq, {"1": float64 1.5}]
    assert.equal(frames.at(-1), `94 12 a3 6d 2f 78 0${seq} 81 a1 31 cb 3f f8 00 00 00 00 00 00`.replace(/ /g, ''));
  }
  // JSON numbers: integers stay integers, the others become float64
  const j = await http(s.http, 'POST', '/v1/publish', { 'x-api-key': KEY, ...JSON_TYPE }, '{"topic": "m/j", "payload": {"n": 3, "f": 21.5}}');
  assert.deepEqual([j.status, j.json], [200, { seq: 1 }]);
  await sub.delivery('m/j');
  assert.equal(frames.at(-1), '94 12 a3 6d 2f 6a 01 82 a1 6e 03 a1 66 cb 40 35 80 00 00 00 00 00'.replace(/ /g, ''));
});

test('HTTP publish: 404 while disabled (the default), whatever the method', async (t) => {
  const s = await started(t);
  for (const method of ['POST', 'GET', 'PUT']) {
    const a = await http(s.http, method, '/v1/publish', { ...bearer(), ...JSON_TYPE }, method === 'GET' ? undefined : '{"topic": "a/b", "payload": 1}');
    assert.equal(a.status, 404, method);
    assert.deepEqual(a.json, { error: 'NOT_FOUND', message: 'HTTP publish API is disabled (set httpPublish.apiKey)' });
  }
});

test('HTTP publish: 405, 401, 415, 413, 400 in the documented order, with their headers', async (t) => {
  const s = await started(t, { httpPublish: { apiKey: KEY, maxBodyBytes: 256 } });
  const post = (headers: Record<string, string>, body?: string | Buffer | Buffer[]) => http(s.http, 'POST', '/v1/publish', headers, body);
  const err = (a: HttpAnswer) => [a.status, a.json?.error];

  // 405 before 401: wrong method, no key
  for (const method of ['GET', 'PUT', 'DELETE']) {
    const a = await http(s.http, method, '/v1/publish');
    assert.deepEqual(err(a), [405, 'METHOD_NOT_ALLOWED'], method);
    assert.equal(a.headers.allow, 'POST');
  }
  // 401: missing or wrong; before 415 (the scheme's case does not matter: RFC 9110)
  const unauthorized: Array<Record<string, string>> = [{}, bearer('wrong'), { 'x-api-key': 'wrong' }, { authorization: `bearer wrong` }, { authorization: KEY }];
  assert.equal((await post({ authorization: `bEaReR ${KEY}`, 'content-type': 'application/json' }, '{"topic": "a/b", "payload": 1}')).status, 200);
  for (const headers of unauthorized) {
    const a = await post({ ...headers, 'content-type': 'text/plain' }, 'x');
    assert.deepEqual(a.json, { error: 'UNAUTHORIZED', message: 'missing or wrong API key' }, JSON.stringify(headers));
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Bearer');
  }
  // 415: no or another content type; before 413
  for (const headers of [bearer(), { ...bearer(), 'content-type': 'text/plain' }, { ...bearer(), 'content-type': 'application/x-www-form-urlencoded' }]) {
    const a = await post(headers, 'x'.repeat(1000));
    assert.deepEqual(err(a), [415, 'UNSUPPORTED_MEDIA_TYPE'], JSON.stringify(headers));
  }
  // 413: by Content-Length, and while reading a chunked body
  const big = JSON.stringify({ topic: 'a/b', payload: 'x'.repeat(300) });
  for (const body of [big, [Buffer.from(big.slice(0, 200)), Buffer.from(big.slice(200))]]) {
    const a = await post({ ...bearer(), ...JSON_TYPE }, body);
    assert.deepEqual(a.json, { error: 'PAYLOAD_TOO_LARGE', message: 'body larger than 256 bytes' });
    assert.equal(a.status, 413);
    assert.equal(a.headers.connection, 'close');
  }
  // 400 BAD_REQUEST: the body
  const bad: Array<[Record<string, string>, string | Buffer, string]> = [
    [JSON_TYPE, '{"topic": "a/b",', 'body is not valid JSON'],
    [JSON_TYPE, '', 'body is not valid JSON'],
    [{ 'content-type': 'application/msgpack' }, Buffer.from('82a5746f706963', 'hex'), 'body is not valid msgpack'],
    [{ 'content-type': 'application/msgpack' }, Buffer.alloc(0), 'body is not valid msgpack'],
    [JSON_TYPE, '[1, 2]', 'body must be an object {topic, payload}'],
    [JSON_TYPE, '"a/b"', 'body must be an object {topic, payload}'],
    [JSON_TYPE, 'null', 'body must be an object {topic, payload}'],
    [{ 'content-type': 'application/msgpack' }, Buffer.from('82a5746f706963a3612f62a77061796c6f6164d40500', 'hex'), 'body is not valid msgpack'], // an unknown extension
    [{ 'content-type': 'application/msgpack' }, Buffer.from('c0c0', 'hex'), 'body is not valid msgpack'], // two values
    [JSON_TYPE, '{"payload": 1}', 'topic must be a string'],
    [JSON_TYPE, '{}', 'topic must be a string'],
    [JSON_TYPE, '{"topic": 7, "payload": 1}', 'topic must be a string'],
  ];
  for (const [headers, body, message] of bad) {
    const a = await post({ ...bearer(), ...headers }, body);
    assert.deepEqual([a.status, a.json], [400, { error: 'BAD_REQUEST', message }], String(body));
  }
  // 400 INVALID_TOPIC, checked before the payload
  for (const body of ['{"topic": "a/+", "payload": 1}', '{"topic": "a//b", "payload": 1}']) {
    const a = await post({ ...bearer(), ...JSON_TYPE }, body);
    assert.deepEqual(err(a), [400, 'INVALID_TOPIC'], body);
    assert.equal(typeof a.json.message, 'string');
  }
  const a = await post({ ...bearer(), ...JSON_TYPE }, '{"topic": "a/b"}');
  assert.deepEqual([a.status, a.json], [400, { error: 'BAD_REQUEST', message: 'payload is required' }]);
});

test('HTTP publish: the API key bypasses JWT publish permissions and the authorizePublish hook', async (t) => {
  const SECRET = 'a-very-long-test-secret-of-32-bytes!!';
  // a JWT that may subscribe to locked/# but publish nowhere
  const jwt = await new SignJWT({ wg: { sub: ['locked/#'], pub: [] } }).setProtectedHeader({ alg: 'HS256' }).setSubject('user-1').setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
  const gateways: Array<[string, Parameters<typeof startGateway>[0], WebSocket.ClientOptions]> = [
    ['hook', { httpPublish: { apiKey: KEY }, hooks: { authorizePublish: () => false } }, {}],
    ['JWT permissions', { httpPublish: { apiKey: KEY }, auth: { enabled: true, secret: SECRET } }, { headers: { authorization: `Bearer ${jwt}` } }],
  ];
  for (const [what, options, opts] of gateways) {
    const s = await started(t, options);
    const sub = await client(t, s.url, 'wiregate.v1', opts);
    assert.deepEqual(await sub.subscribe('locked/#'), [16, 1], what);
    assert.deepEqual((await sub.publish('locked/door', 1)).slice(0, 3), [17, 2, 104], `${what} refuses the WebSocket PUBLISH`);
    const a = await http(s.http, 'POST', '/v1/publish', { ...bearer(), ...JSON_TYPE }, '{"topic": "locked/door", "payload": 2}');
    assert.deepEqual([a.status, a.json], [200, { seq: 1 }], what);
    assert.deepEqual(await sub.delivery('locked/door'), [18, 'locked/door', 1, 2], what);
  }
});

test('HTTP publish: 503 UNAVAILABLE with Retry-After: 1 while the gateway drains', async (t) => {
  const s = await startGateway({ httpPublish: { apiKey: KEY }, drainTimeout: 60_000 });
  // a client that never answers the close frame keeps the gateway draining
  const { socket } = await rawUpgrade(s.port, { 'sec-websocket-protocol': 'wiregate.v1' });
  t.after(async () => {
    socket.destroy();
    await closing;
  });
  const closing = s.gw.close();
  const a = await http(s.http, 'POST', '/v1/publish', { ...bearer(), ...JSON_TYPE }, '{"topic": "a/b", "payload": 1}');
  assert.deepEqual([a.status, a.json], [503, { error: 'UNAVAILABLE', message: 'server shutting down' }]);
  assert.equal(a.headers['retry-after'], '1');
  // draining is checked first: an invalid, unauthenticated request also gets 503, not 401/400
  const b = await http(s.http, 'POST', '/v1/publish', { ...JSON_TYPE }, 'not json');
  assert.equal(b.status, 503);
});

test('HTTP publish: 503 BROKER_UNAVAILABLE when the broker fails the publish', async (t) => {
  const broker: Broker = new MemoryBroker();
  broker.publish = () => Promise.reject(new Error('broker down'));
  const s = await started(t, { httpPublish: { apiKey: KEY }, broker });
  const a = await http(s.http, 'POST', '/v1/publish', { ...bearer(), ...JSON_TYPE }, '{"topic": "a/b", "payload": 1}');
  assert.deepEqual([a.status, a.json], [503, { error: 'BROKER_UNAVAILABLE', message: 'the broker did not complete the operation; try again later' }]);
  assert.equal(a.headers['retry-after'], '1');
});

// ---- section 1: answers instead of an upgrade, subprotocols ---------------------------------------

test('allowedOrigins: a client without an Origin header gets 403 ORIGIN_NOT_ALLOWED, a listed Origin connects', async (t) => {
  const s = await started(t, { allowedOrigins: ['https://app.example'] });
  const r = await rejectedUpgrade(s.url); // ws sends no Origin unless told to
  assert.deepEqual([r.status, r.body], [403, { error: 'ORIGIN_NOT_ALLOWED', message: 'origin not allowed' }]);
  const other = await rejectedUpgrade(s.url, 'wiregate.v1', { origin: 'https://evil.example' });
  assert.equal(other.status, 403);
  const c = await client(t, s.url, 'wiregate.v1', { origin: 'https://app.example' });
  assert.deepEqual(await c.call(5), [20, 1]);
});

test('431 for headers over Node\'s limit (16 KiB by default): a ~20 KiB Authorization: Bearer token', async (t) => {
  const s = await started(t);
  const token = 'a'.repeat(Math.max(20 * 1024, maxHeaderSize + 4096));
  const tooLarge: Array<[string, string | string[], WebSocket.ClientOptions]> = [
    [s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${token}` } }],
    [`${s.url}?token=${token}`, 'wiregate.v1', {}],
    [s.url, ['wiregate.v1', `bearer.${token}`], {}],
  ];
  for (const [url, protocols, opts] of tooLarge) {
    const r = await rejectedUpgrade(url, protocols, opts);
    assert.equal(r.status, 431);
    assert.equal(r.body, '', 'Node answers without a body');
    assert.equal(r.headers.connection, 'close');
  }
  // the same kind of header below the limit is fine (JWT auth is off: the header is ignored)
  const c = await client(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${'a'.repeat(maxHeaderSize - 2048)}` } });
  assert.deepEqual(await c.call(5), [20, 1]);
});

/** A WebSocket handshake by hand: status line and headers of the answer, and the open socket. */
async function rawUpgrade(port: number, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string>; socket: Socket; rest: Buffer }> {
  const socket = tcpConnect(port, '127.0.0.1');
  await once(socket, 'connect');
  const lines = ['GET /ws HTTP/1.1', 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    buf = Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end === -1) continue;
    socket.pause();
    const [statusLine, ...fields] = buf.subarray(0, end).toString('latin1').split('\r\n');
    const h: Record<string, string> = {};
    for (const f of fields) {
      const i = f.indexOf(':');
      h[f.slice(0, i).trim().toLowerCase()] = f.slice(i + 1).trim();
    }
    return { status: Number(statusLine.split(' ')[1]), headers: h, socket, rest: buf.subarray(end + 4) };
  }
}

test('bearer.<jwt> offered alone: 426 SUBPROTOCOL_REQUIRED (no client could use a 101 without a subprotocol); with wiregate.v1 it works', async (t) => {
  const SECRET = 'a-very-long-test-secret-of-32-bytes!!';
  const s = await started(t, { auth: { enabled: true, secret: SECRET } });
  const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('user-1').setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));

  const up = await rawUpgrade(s.port, { 'sec-websocket-protocol': `bearer.${jwt}` });
  t.after(() => up.socket.destroy());
  assert.equal(up.status, 426);
  assert.equal(up.headers['sec-websocket-protocol'], 'wiregate.v1', 'the answer names the subprotocol to offer');
  // offered together with wiregate.v1 it works
  const c = await client(t, s.url, ['wiregate.v1', `bearer.${jwt}`]);
  assert.equal(c.ws.protocol, 'wiregate.v1');
});

// ---- section 3: id 0 ---------------------------------------------------------------------------

/** Everything the server sent for what was sent before: answers precede the PONG of a later PING. */
async function answersBefore(c: Client): Promise<unknown[]> {
  const pong = await c.call(5);
  assert.equal(pong[0], 20);
  return c.messages.splice(0);
}

test('id 0: SUBSCRIBE and UNSUBSCRIBE act without a RESULT; a refusal is still sent as ERROR id 0', async (t) => {
  const s = await started(t);
  const c = await client(t, s.url);
  const pub = await client(t, s.url);
  c.send([1, 0, 'zero/#']);
  assert.deepEqual(await answersBefore(c), []);
  assert.deepEqual(await pub.publish('zero/a', 1), [16, 1, 1]);
  assert.deepEqual(await c.delivery('zero/a'), [18, 'zero/a', 1, 1], 'the subscription is active');

  c.send([1, 0, 'bad//pattern']);
  assert.deepEqual(await answersBefore(c), [[17, 0, 103, 'topic has an empty level']]);

  c.send([2, 0, 'zero/#']);
  c.send([2, 0, 'never/subscribed']);
  assert.deepEqual(await answersBefore(c), []);
  assert.deepEqual(await pub.publish('zero/a', 2), [16, 2, 2]);
  assert.deepEqual(await answersBefore(c), [], 'unsubscribed: no delivery');
});

test('id 0: PUBLISH publishes without a RESULT; a refusal is still sent as ERROR id 0', async (t) => {
  const s = await started(t);
  const c = await client(t, s.url);
  const sub = await client(t, s.url);
  await sub.subscribe('p/#');
  c.send([3, 0, 'p/x', 'hello']);
  assert.deepEqual(await answersBefore(c), []);
  assert.deepEqual(await sub.delivery('p/x'), [18, 'p/x', 1, 'hello']);
  c.send([3, 0, 'p/+', 1]);
  const [e] = (await answersBefore(c)) as [unknown[]];
  assert.deepEqual(e.slice(0, 3), [17, 0, 103]);
});

test('id 0: REQUEST is refused with BAD_REQUEST (101) and the method is not called', async (t) => {
  const s = await started(t);
  let calls = 0;
  s.gw.handle('echo', (_ctx, p) => {
    calls++;
    return p;
  });
  const c = await client(t, s.url);
  // canonical form (payload present) and without payload
  c.send([4, 0, 'echo', 'hi']);
  c.send([4, 0, 'echo']);
  const err = [17, 0, 101, 'request id must be an unsigned 32-bit integer > 0'];
  assert.deepEqual(await answersBefore(c), [err, err]);
  assert.equal(calls, 0);
  assert.deepEqual(await c.request('echo', 'hi'), [16, 2, 'hi'], 'the same request with an id works');
});

test('id 0: PING is answered with PONG [20, 0]', async (t) => {
  const s = await started(t);
  const c = await client(t, s.url);
  c.send([5, 0]);
  assert.deepEqual(await answersBefore(c), [[20, 0]]);
});

test('id 0: REFRESH is answered like any id: ERROR [17, 0, 113, ...] without JWT auth, RESULT [16, 0, {expiresAt}] with it', async (t) => {
  const plain = await started(t);
  const c = await client(t, plain.url);
  c.send([6, 0, 'x']);
  assert.deepEqual(await answersBefore(c), [[17, 0, 113, 'token refresh needs JWT auth to be enabled']]);

  const SECRET = 'a-very-long-test-secret-of-32-bytes!!';
  const key = new TextEncoder().encode(SECRET);
  const s = await started(t, { auth: { enabled: true, secret: SECRET } });
  const jwt = (exp: number) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('user-1').setExpirationTime(exp).sign(key);
  const now = Math.floor(Date.now() / 1000);
  const a = await client(t, s.url, 'wiregate.v1', { headers: { authorization: `Bearer ${await jwt(now + 600)}` } });
  a.send([6, 0, await jwt(now + 3600)]);
  // REFRESH verifies asynchronously: wait for its answer itself
  assert.deepEqual(await a.next((m) => Array.isArray(m) && m[0] === 16 && m[1] === 0), [16, 0, { expiresAt: (now + 3600) * 1000 }]);
  a.send([6, 0, 'not-a-jwt']);
  const e = await a.next<unknown[]>((m) => Array.isArray(m) && m[0] === 17);
  assert.deepEqual(e.slice(0, 3), [17, 0, 112]);
});
