'use strict';
// The live presence page. No build step, no framework: one WebSocket to the
// gateway that served this page. State comes from one snapshot and then
// diffs only (a resync, when the gateway or this page sees a seq gap, is a
// fresh snapshot). Nothing here polls the server.

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const STATES = { available: 'available', busy: 'busy', blocked: 'blocked' };

  const state = {
    topic: params.get('topic') || null,
    gateway: null,
    you: null, // hello message: worker_id, fd, principal, kind, agent_id
    seq: null, // last seq applied; null while waiting for a snapshot
    entries: new Map(), // "worker_id/fd" -> entry
    live: false,
    stats: { snapshots: 0, diffs: 0, resyncs: 0, errors: 0, connects: 0 },
    log: [], // applied diffs: { t (ms), kind, key, state, note, until_ts, seq }
    ws: null,
  };
  window.presence = state; // for debugging and the end-to-end test

  const keyOf = (e) => `${e.worker_id}/${e.fd}`;
  const nameOf = (principal) => principal.replace(/^(user|human|u):/, '');
  // A principal's display name: the "name" in the meta of its newest human
  // entry (presence 1.1), else its id without the prefix.
  const displayOf = (principal, humans) => {
    const named = humans.filter((e) => e.meta && typeof e.meta.name === 'string').sort((a, b) => b.since - a.since);
    return named.length ? named[0].meta.name : nameOf(principal);
  };
  const nowS = () => Date.now() / 1000;

  function b64url(str) {
    const bytes = new TextEncoder().encode(str);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function showError(text, persist = false) {
    state.stats.errors++;
    const div = document.createElement('div');
    div.className = 'error';
    div.textContent = text;
    $('errors').prepend(div);
    while ($('errors').children.length > 4) $('errors').lastChild.remove();
    if (!persist) setTimeout(() => div.remove(), 8000);
  }

  function setFeed(live, text) {
    state.live = live;
    $('feed').dataset.live = String(live);
    $('feed-text').textContent = text;
  }

  // ---------------------------------------------------------------- render

  function hue(s) {
    let h = 0;
    for (const ch of s) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 360;
  }

  function countdownText(until) {
    if (!until) return '';
    const left = Math.ceil(until - nowS());
    if (left <= 0) return 'expiring…';
    if (left < 60) return `resets in ${left}s`;
    if (left < 3600) return `resets in ${Math.floor(left / 60)}m ${left % 60}s`;
    const h = Math.floor(left / 3600);
    return h < 48 ? `resets in ${h}h ${Math.floor((left % 3600) / 60)}m` : `until ${new Date(until * 1000).toLocaleDateString()}`;
  }

  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function botIcon() {
    // A small robot head, drawn inline (no emoji font needed).
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 16 16');
    svg.setAttribute('class', 'bot');
    svg.setAttribute('aria-label', 'agent');
    const shapes = [
      ['rect', { x: 2, y: 4, width: 12, height: 10, rx: 3, fill: '#7c3aed' }],
      ['rect', { x: 7.25, y: 1, width: 1.5, height: 3, fill: '#7c3aed' }],
      ['circle', { cx: 8, cy: 1.5, r: 1.3, fill: '#7c3aed' }],
      ['circle', { cx: 5.6, cy: 8.5, r: 1.5, fill: '#fff' }],
      ['circle', { cx: 10.4, cy: 8.5, r: 1.5, fill: '#fff' }],
      ['rect', { x: 5.5, y: 11.2, width: 5, height: 1.2, rx: 0.6, fill: '#fff' }],
    ];
    for (const [tag, attrs] of shapes) {
      const n = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      svg.append(n);
    }
    return svg;
  }

  function entryRow(e) {
    const mine = state.you && e.worker_id === state.you.worker_id && e.fd === state.you.fd;
    const agent = e.ekind === 'agent_for';
    const li = el('li', `entry ${agent ? 'agent' : 'human'}${mine ? ' mine' : ''}`);
    Object.assign(li.dataset, {
      key: keyOf(e),
      principal: e.principal,
      kind: e.ekind,
      agent: e.agent_id || '',
      state: e.state,
      note: e.note || '',
      until: String(e.until_ts || 0),
      worker: e.worker_id,
      fd: String(e.fd),
    });
    const dot = el('span', 'dot');
    dot.dataset.state = e.state;
    dot.title = e.state;
    li.append(dot);
    const label = el('span', 'label');
    if (agent) {
      label.append(botIcon(), el('strong', 'agent-name', e.agent_id), el('span', 'tag', `agent for ${nameOf(e.principal)}`));
    } else {
      label.append(el('span', null, 'browser'));
      if (mine) label.append(el('span', 'tag you', 'this tab'));
    }
    label.append(el('span', 'state', STATES[e.state] || e.state));
    li.append(label);
    li.append(el('span', 'note', e.note || ''));
    const cd = el('span', 'countdown', countdownText(e.until_ts));
    cd.dataset.until = String(e.until_ts || 0);
    li.append(cd);
    const since = new Date(e.since * 1000).toLocaleTimeString();
    li.append(el('span', 'where', `worker ${e.worker_id} · fd ${e.fd} · since ${since}`));
    return li;
  }

  function render() {
    const groups = new Map(); // principal -> { humans: [], agents: [] }
    for (const e of state.entries.values()) {
      if (!groups.has(e.principal)) groups.set(e.principal, { humans: [], agents: [] });
      groups.get(e.principal)[e.ekind === 'agent_for' ? 'agents' : 'humans'].push(e);
    }
    const mine = state.you ? state.you.principal : null;
    const order = [...groups.keys()].sort((a, b) => (a === mine ? -1 : b === mine ? 1 : a.localeCompare(b)));
    const root = $('members');
    root.replaceChildren();
    for (const p of order) {
      const g = groups.get(p);
      const bySince = (a, b) => a.since - b.since || (a.worker_id < b.worker_id ? -1 : 1) || a.fd - b.fd;
      g.humans.sort(bySince);
      g.agents.sort((a, b) => a.agent_id.localeCompare(b.agent_id) || bySince(a, b));
      const sec = el('section', `group${g.humans.length ? '' : ' away'}`);
      sec.dataset.principal = p;
      const head = el('div', 'group-head');
      const shown = displayOf(p, g.humans);
      const av = el('span', 'avatar', shown.slice(0, 1).toUpperCase() || '?');
      av.style.background = `hsl(${hue(p)} 55% 48%)`;
      head.append(av, el('span', 'group-name', shown), el('span', 'group-principal', p));
      if (p === mine) head.append(el('span', 'tag you', 'you'));
      if (!g.humans.length) head.append(el('span', 'tag absent', 'not connected'));
      if (g.humans.length > 1) head.append(el('span', 'tag absent', `${g.humans.length} tabs`));
      sec.append(head);
      const ul = el('ul', 'entries');
      for (const e of g.humans) ul.append(entryRow(e));
      for (const e of g.agents) ul.append(entryRow(e));
      sec.append(ul);
      root.append(sec);
    }
    $('empty').hidden = state.entries.size > 0 || state.seq === null;
    askCounts();
    renderMe();
  }

  // The header counts come from the server (presence_principals), asked
  // for after each change the page applies, at most one request in flight.
  let countsAsked = false;
  let countsAgain = false;
  function askCounts() {
    if (countsAsked) {
      countsAgain = true;
      return;
    }
    countsAsked = true;
    send({ type: 'counts', topic: state.topic });
  }
  function onCounts(m) {
    if (m.topic !== state.topic) return;
    state.counts = m;
    const n = (k, one, many) => `${m[k]} ${m[k] === 1 ? one : many}`;
    $('counts').textContent = `${n('people', 'person', 'people')} · ${n('agents', 'agent', 'agents')} · ${n('connections', 'connection', 'connections')}`;
    countsAsked = false;
    if (countsAgain) {
      countsAgain = false;
      askCounts();
    }
  }

  function renderMe() {
    if (!state.you) return;
    const e = state.entries.get(keyOf(state.you));
    $('me-dot').dataset.state = e ? e.state : 'available';
    const who = state.you.kind === 'agent_for' ? `${state.you.agent_id} (for ${nameOf(state.you.principal)})` : nameOf(state.you.principal);
    $('me-name').textContent = who;
    $('me-meta').textContent = `via ${state.gateway} · worker ${state.you.worker_id} · fd ${state.you.fd}`;
  }

  setInterval(() => {
    // Local clock only: re-draws the countdowns; the reset itself arrives as a diff.
    for (const cd of document.querySelectorAll('.countdown')) {
      const t = countdownText(Number(cd.dataset.until));
      if (cd.textContent !== t) cd.textContent = t;
    }
  }, 250);

  // ---------------------------------------------------------------- wire

  function send(obj) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
  }

  function resubscribe(why) {
    state.stats.resyncs++;
    state.seq = null;
    setFeed(false, `resyncing (${why})…`);
    send({ type: 'subscribe', topic: state.topic });
  }

  function onSnapshot(m) {
    if (m.topic !== state.topic) return;
    state.stats.snapshots++;
    if (m.reason && m.reason !== 'subscribe') state.stats.resyncs++;
    state.entries = new Map();
    for (const e of m.entries) state.entries.set(keyOf(e), e);
    state.seq = m.seq;
    setFeed(true, `live · seq ${state.seq}`);
    render();
  }

  function onDiff(m) {
    const d = m.diff;
    if (m.topic !== state.topic || state.seq === null) return;
    if (d.seq <= state.seq) return;
    if (d.seq !== state.seq + 1) return resubscribe(`gap ${state.seq} → ${d.seq}`);
    state.seq = d.seq;
    state.stats.diffs++;
    state.log.push({ t: Date.now(), kind: d.kind, key: keyOf(d), state: d.state, note: d.note, until_ts: d.until_ts, seq: d.seq });
    if (state.log.length > 500) state.log.shift();
    const k = keyOf(d);
    if (d.kind === 'leave') state.entries.delete(k);
    else {
      const { kind, seq, ...entry } = d; // eslint-disable-line no-unused-vars
      state.entries.set(k, entry);
    }
    setFeed(true, `live · seq ${state.seq}`);
    render();
  }

  let attempt = 0;
  function connect(tokenStr) {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?topic=${encodeURIComponent(state.topic)}&token=${encodeURIComponent(tokenStr)}`;
    const ws = new WebSocket(url);
    state.ws = ws;
    state.seq = null;
    setFeed(false, 'connecting…');
    ws.onopen = () => {
      state.stats.connects++;
      attempt = 0;
      countsAsked = countsAgain = false;
      send({ type: 'subscribe', topic: state.topic });
    };
    ws.onmessage = (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      switch (m.type) {
        case 'hello':
          state.you = m;
          state.gateway = m.gateway;
          $('me').hidden = false;
          for (const b of document.querySelectorAll('#status-form button')) b.disabled = false;
          render();
          break;
        case 'snapshot':
          onSnapshot(m);
          break;
        case 'diff':
          onDiff(m);
          break;
        case 'counts':
          onCounts(m);
          break;
        case 'feed':
          if (m.topic === state.topic && !m.live) {
            state.seq = null;
            setFeed(false, 'gateway lost its database feed; resyncing…');
          }
          break;
        case 'error':
          countsAsked = false; // a refused counts request must not block the next
          showError(`${m.error}: ${m.message}`, m.error === 'unauthorized');
          break;
        default:
          break;
      }
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.you = null;
      for (const b of document.querySelectorAll('#status-form button')) b.disabled = true;
      if (ev.code === 4401 || ev.code === 4400) {
        setFeed(false, 'not allowed in');
        return;
      }
      const delay = Math.min(8000, 500 * 2 ** attempt++);
      setFeed(false, `disconnected; retrying in ${Math.round(delay / 1000)}s`);
      setTimeout(() => connect(tokenStr), delay);
    };
  }

  // ---------------------------------------------------------------- controls

  $('status-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = ev.target;
    send({
      type: 'status',
      state: f.state.value,
      note: $('note').value,
      expires_in: Number($('expiry').value),
    });
  });
  $('clear-status').addEventListener('click', () => {
    $('status-form').state.value = 'available';
    $('note').value = '';
    $('expiry').value = '0';
    send({ type: 'clear_status' });
  });
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams(location.search);
    p.set('user', $('login-name').value.trim());
    location.search = p.toString();
  });

  // ---------------------------------------------------------------- start

  (async () => {
    let cfg = { demo: true, default_topic: 'room:lobby', gateway: '' };
    try {
      cfg = await (await fetch('config.json', { cache: 'no-store' })).json();
    } catch (e) {
      showError('cannot read the gateway config');
    }
    state.topic = state.topic || cfg.default_topic;
    state.gateway = cfg.gateway;
    $('topic').textContent = state.topic;
    document.title = `${state.topic} · who's here`;
    for (const b of document.querySelectorAll('#status-form button')) b.disabled = true;

    let tok = params.get('token');
    if (!tok && cfg.demo) {
      const user = (params.get('user') || '').trim();
      if (!user) {
        $('login').hidden = false;
        setFeed(false, 'not joined');
        return;
      }
      const payload = { sub: user.includes(':') ? user : `user:${user}` };
      const name = (params.get('name') || (user.includes(':') ? '' : user)).trim();
      if (name) payload.name = name;
      const agent = (params.get('agent') || '').trim();
      if (agent) Object.assign(payload, { kind: 'agent_for', agent });
      tok = b64url(JSON.stringify(payload));
    }
    if (!tok) {
      setFeed(false, 'no token');
      showError('this gateway needs a signed token: open the page with ?token=…', true);
      return;
    }
    connect(tok);
  })();
})();
