// wiregate demo page: a WiregateClient (the IIFE bundle, global `Wiregate`) driven by plain DOM.
// Everything it does is an ordinary client message on the gateway's WebSocket endpoint.
// `window.wiregateDemo` exposes the state and the actions, for the console and for test/browser.test.ts.
(() => {
  'use strict';

  const MAX_MESSAGES = 200;
  const MAX_EVENTS = 100;
  const MAX_PAYLOAD_CHARS = 4000;

  const $ = (id) => document.getElementById(id);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';
  const wsPath = meta('wiregate-path').startsWith('/') ? meta('wiregate-path') : '/ws';
  const authRequired = meta('wiregate-auth') === 'required';
  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${wsPath}`;

  const demo = {
    url,
    /** The client's state, as shown in the header. */
    state: 'idle',
    /** The last close: {code, reason, reconnect}. */
    lastClose: null,
    /** Connection attempts since the last connection. */
    attempt: 0,
    client: null,
    /** Received messages, oldest first: {topic, seq, epoch, payload, retained, recovered, at}. */
    messages: [],
    /** Connection, resubscription and presence events, oldest first: {at, kind, text, data}. */
    events: [],
    /** pattern -> {options, subscription (null while none is active)}. */
    subscriptions: new Map(),
    /** The topic shown in the presence card and its entries. */
    presence: { topic: null, entries: [] },
    connect,
    disconnect,
    subscribe,
    unsubscribe,
    publish,
    showPresence,
  };
  window.wiregateDemo = demo;
  $('endpoint').textContent = url;

  const Client = window.Wiregate && window.Wiregate.WiregateClient;
  if (typeof Client !== 'function') {
    notice('The client bundle did not load (demo/wiregate-client.js). Run <code>npm run build</code> and restart the gateway.', true);
    for (const b of document.querySelectorAll('button')) b.disabled = true;
    return;
  }

  // ---- rendering helpers -------------------------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function notice(html, isError) {
    const n = $('notice');
    n.innerHTML = html;
    n.classList.toggle('error', Boolean(isError));
    n.hidden = false;
  }

  const clock = (d) => d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');

  function bytesToBase64(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  /** JSON for display: binary payloads as {"$base64": ...} (as `wiregate sub` prints them), big integers as strings. */
  function toJson(value, indent) {
    return JSON.stringify(
      value,
      (_k, v) => (v instanceof Uint8Array ? { $base64: bytesToBase64(v) } : typeof v === 'bigint' ? v.toString() : v === undefined ? null : v),
      indent,
    );
  }

  function describeError(err) {
    if (err && err.code !== undefined) return `${err.code}: ${err.message}`;
    return String((err && err.message) || err);
  }

  function result(id, text, ok) {
    const r = $(id);
    r.textContent = text;
    r.className = `result ${ok === undefined ? '' : ok ? 'ok' : 'error'}`;
  }

  function setState(state, close) {
    demo.state = state;
    if (close !== undefined) demo.lastClose = close;
    const s = $('status');
    s.dataset.state = state;
    const last = demo.lastClose;
    const closed = last ? `${last.code}${last.reason ? ' ' + last.reason : ''}` : '';
    let text = state;
    if (state === 'connecting') text = last ? `reconnecting · attempt ${demo.attempt} · closed with ${closed}` : 'connecting…';
    if (state === 'disconnected' && last) text = `disconnected · ${closed}${last.reconnect ? ' · reconnecting' : ''}`;
    $('status-text').textContent = text;
  }

  function event(kind, text, data, tone) {
    const at = new Date();
    demo.events.push({ at: at.getTime(), kind, text, data });
    if (demo.events.length > MAX_EVENTS) demo.events.shift();
    const list = $('events');
    const li = el('li');
    const t = el('time', '', clock(at));
    li.append(t, el('span', tone ? `ev-${tone}` : '', text));
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  // ---- messages ----------------------------------------------------------------------------------

  function onMessage(m) {
    const entry = { topic: m.topic, seq: m.seq, epoch: m.epoch, payload: m.payload, retained: Boolean(m.retained), recovered: Boolean(m.recovered), at: Date.now() };
    demo.messages.push(entry);
    if (demo.messages.length > MAX_MESSAGES) demo.messages.shift();
    const list = $('messages');
    list.querySelector('.empty')?.remove();
    const li = el('li', 'fresh');
    li.dataset.topic = entry.topic;
    li.dataset.seq = String(entry.seq);
    const head = el('div', 'msg-head');
    head.append(el('span', 'msg-topic', entry.topic), el('span', 'msg-seq', `#${entry.seq}`));
    if (entry.retained) head.append(el('span', 'flag retained', 'retained'));
    if (entry.recovered) head.append(el('span', 'flag recovered', 'recovered'));
    head.append(el('span', 'msg-time', clock(new Date(entry.at))));
    let text = toJson(entry.payload, 2) ?? 'null';
    if (text.length > MAX_PAYLOAD_CHARS) text = text.slice(0, MAX_PAYLOAD_CHARS) + `\n… (${text.length - MAX_PAYLOAD_CHARS} more characters)`;
    li.append(head, el('pre', 'msg-payload', text));
    list.prepend(li);
    while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
    $('msg-count').textContent = String(demo.messages.length);
    if (!positionsDue) {
      // the positions shown move with the messages: redraw them once per frame, not per message
      positionsDue = true;
      requestAnimationFrame(() => {
        positionsDue = false;
        renderSubscriptions();
      });
    }
  }
  let positionsDue = false;

  $('clear').addEventListener('click', () => {
    demo.messages.length = 0;
    $('messages').replaceChildren(el('li', 'empty', 'Cleared. New messages appear here.'));
    $('msg-count').textContent = '0';
  });

  // ---- connection --------------------------------------------------------------------------------

  function token() {
    return $('token').value.trim();
  }

  async function connect() {
    const old = demo.client;
    demo.client = null;
    if (old) await old.close().catch(() => {});
    for (const s of demo.subscriptions.values()) s.subscription = null;
    const t = token();
    demo.lastClose = null;
    const client = new Client(url, t ? { token: t } : {});
    demo.client = client;
    client.on('connecting', (e) => {
      if (client !== demo.client) return;
      demo.attempt = e.attempt;
      setState('connecting');
    });
    client.on('connected', () => {
      if (client !== demo.client) return;
      setState('connected');
      event('connected', `connected to ${url}`, null, 'ok');
    });
    client.on('disconnected', (e) => {
      if (client !== demo.client) return;
      setState(client.state === 'closed' ? 'closed' : 'disconnected', e);
      event('disconnected', `disconnected: ${e.code}${e.reason ? ' ' + e.reason : ''}${e.reconnect ? ' (will reconnect)' : ''}`, e, 'error');
    });
    client.on('resubscribed', (e) => {
      if (client !== demo.client) return;
      const parts = e.subscriptions.map((s) => `${s.pattern} (${s.recovered ? 'recovered' : 'not recovered'})`);
      event('resubscribed', `resubscribed: ${parts.join(', ') || 'nothing'}`, e);
      renderSubscriptions();
    });
    client.on('presence', (e) => {
      if (client !== demo.client) return;
      const who = e.entry.user ?? e.entry.client;
      event('presence', `${e.topic}: ${who} ${e.kind === 'join' ? 'joined' : 'left'}`, e);
      if (e.topic === demo.presence.topic) {
        demo.presence.entries = demo.presence.entries.filter((x) => x.client !== e.entry.client);
        if (e.kind === 'join') demo.presence.entries.push(e.entry);
        renderPresence();
      }
    });
    client.on('error', (err) => client === demo.client && event('error', `error: ${describeError(err)}`, null, 'error'));
    setState('connecting');
    try {
      await client.connect();
    } catch (err) {
      if (client === demo.client) event('error', `cannot connect: ${describeError(err)}`, null, 'error');
      return;
    }
    // subscriptions made before a new Connect: take them over (each recovers from its last position)
    for (const [pattern, s] of demo.subscriptions) {
      if (s.subscription === null) await subscribe(pattern, s.options).catch(() => {});
    }
    setState(client.state);
  }

  async function disconnect() {
    const client = demo.client;
    if (!client) return;
    await client.close();
    setState('closed');
    event('closed', 'closed by you');
  }

  $('connect-form').addEventListener('submit', (e) => {
    e.preventDefault();
    connect();
  });
  $('disconnect').addEventListener('click', () => disconnect());

  // ---- subscriptions -----------------------------------------------------------------------------

  function renderSubscriptions() {
    const list = $('subs');
    list.replaceChildren();
    for (const [pattern, s] of demo.subscriptions) {
      const li = el('li');
      const left = el('span');
      left.append(el('span', 'pattern', pattern));
      const pos = s.subscription && s.subscription.position;
      if (pos) {
        const p = el('span', 'pos', `@${pos.seq}:${pos.epoch}`);
        p.title = 'position (seq:epoch): after a reconnect the subscription resumes from here';
        left.append(p);
      }
      if (!s.subscription) left.append(el('span', 'pos', '(inactive)'));
      const b = el('button', 'small', 'Unsubscribe');
      b.type = 'button';
      b.addEventListener('click', () => unsubscribe(pattern));
      li.append(left, b);
      list.append(li);
    }
  }

  /** Subscribes with recovery, so a reconnect resumes from the last message seen. */
  async function subscribe(pattern, options) {
    const opts = { retained: true, presence: false, ...options };
    const client = demo.client;
    if (!client) throw new Error('not connected');
    const subscription = await client.subscribe(pattern, onMessage, { retained: opts.retained, presence: opts.presence, recover: true });
    demo.subscriptions.set(pattern, { options: opts, subscription });
    renderSubscriptions();
    event('subscribed', `subscribed to ${pattern}`, { pattern, position: subscription.position ?? null }, 'ok');
    return subscription;
  }

  async function unsubscribe(pattern) {
    const s = demo.subscriptions.get(pattern);
    demo.subscriptions.delete(pattern);
    renderSubscriptions();
    if (s && s.subscription) await s.subscription.unsubscribe().catch((err) => event('error', `unsubscribe ${pattern}: ${describeError(err)}`, null, 'error'));
    event('unsubscribed', `unsubscribed from ${pattern}`);
  }

  $('sub-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const pattern = $('sub-pattern').value.trim();
    if (demo.subscriptions.get(pattern)?.subscription) return result('sub-result', `already subscribed to ${pattern}`);
    result('sub-result', 'subscribing…');
    try {
      await subscribe(pattern, { retained: $('sub-retained').checked, presence: $('sub-presence').checked });
      result('sub-result', `subscribed to ${pattern}`, true);
    } catch (err) {
      result('sub-result', describeError(err), false);
    }
  });

  // ---- publish -----------------------------------------------------------------------------------

  async function publish(topic, payload, options) {
    const client = demo.client;
    if (!client) throw new Error('not connected');
    await client.publish(topic, payload, { ack: true, retain: Boolean(options && options.retain) });
  }

  $('pub-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const topic = $('pub-topic').value.trim();
    let payload;
    try {
      payload = JSON.parse($('pub-payload').value);
    } catch (err) {
      return result('pub-result', `payload is not valid JSON: ${err.message}`, false);
    }
    try {
      await publish(topic, payload, { retain: $('pub-retain').checked });
      result('pub-result', `published to ${topic}${$('pub-retain').checked ? ' (retained)' : ''}`, true);
    } catch (err) {
      result('pub-result', describeError(err), false);
    }
  });

  // ---- presence ----------------------------------------------------------------------------------

  function renderPresence() {
    const list = $('presence');
    list.replaceChildren();
    for (const p of demo.presence.entries) {
      const li = el('li');
      li.append(el('span', 'who', p.user ?? '(anonymous)'), el('span', 'pos', p.client));
      list.append(li);
    }
    if (demo.presence.topic !== null) result('presence-result', `${demo.presence.entries.length} on ${demo.presence.topic}`, true);
  }

  async function showPresence(topic) {
    const client = demo.client;
    if (!client) throw new Error('not connected');
    const entries = await client.presence(topic);
    demo.presence = { topic, entries: [...entries] };
    renderPresence();
    return entries;
  }

  $('presence-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await showPresence($('presence-topic').value.trim());
    } catch (err) {
      demo.presence = { topic: null, entries: [] };
      renderPresence();
      result('presence-result', describeError(err), false);
    }
  });

  // ---- start -------------------------------------------------------------------------------------

  // A token can come in the fragment (never sent to the server): /demo#token=eyJ...
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) $('token').value = fromHash;
  if (authRequired && !token()) {
    notice('This gateway requires a token. Paste one (e.g. from <code>wiregate token --sub me --allow-sub \'demo/#\' --allow-pub \'demo/#\'</code>) and press Connect.');
    setState('idle');
  } else {
    connect();
  }
})();
