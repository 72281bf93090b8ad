// socket.io baseline (websocket transport only, no polling). Echo: event 'e' is emitted back;
// 's' joins the broadcast room; 'p' broadcasts to the room as 'm' and acknowledges with 'a'.
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { serve } from './common.mjs';

serve(async () => {
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'], serveClient: false, perMessageDeflate: false, maxHttpBufferSize: 16 * 1024 * 1024 });
  io.on('connection', (socket) => {
    socket.on('e', (data) => socket.emit('e', data));
    socket.on('s', () => socket.join('b'));
    socket.on('p', (data) => {
      io.to('b').emit('m', data);
      socket.emit('a');
    });
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  return { port: http.address().port, close: () => io.close() };
});
