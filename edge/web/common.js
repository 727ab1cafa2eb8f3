// What the player and host pages share: the edge connection, the server clock, and safe DOM building.
// Data from the server (nicknames, question texts) only ever reaches the page as text nodes.

/** Builds an element. `props.text` becomes textContent; children are nodes or strings (made text nodes). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

/** Replaces a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
}

export const $ = (selector) => document.querySelector(selector);

/** Shows the one `<section data-view>` whose name is given and hides the others. */
export function showView(name) {
  for (const section of document.querySelectorAll("[data-view]")) {
    section.hidden = section.dataset.view !== name;
  }
  document.body.dataset.screen = name;
}

export const formatNumber = (n) => Number(n).toLocaleString("en-US");

/**
 * The server's clock as seen from here. The countdown must follow the server, which decides when a
 * question closes; the local clock may be minutes off. Each ping gives offset = server time + half the
 * round trip - local time; the sample with the shortest round trip is the most precise and is kept.
 */
export class ServerClock {
  #offsetMs = 0;
  #bestRttMs = Infinity;

  sample(serverTimeMs, sentAtMs, receivedAtMs) {
    const rtt = receivedAtMs - sentAtMs;
    if (rtt < 0 || rtt > this.#bestRttMs) return;
    this.#bestRttMs = rtt;
    this.#offsetMs = serverTimeMs + rtt / 2 - receivedAtMs;
  }

  /** A state's server_time_ms left the server before it arrived: a rough offset until a ping answers. */
  hint(serverTimeMs) {
    if (this.#bestRttMs === Infinity) this.#offsetMs = serverTimeMs - Date.now();
  }

  now() {
    return Date.now() + this.#offsetMs;
  }
}

/**
 * The countdown of an open question: whole seconds left and the fraction of the time left. Never more
 * than the question's time: until a ping answers, the clock is set from a state that left the server
 * before it arrived, so just after a question opens it may read slightly before the opening.
 */
export function countdown(question, clock) {
  const total = Math.max(1, question.close_time_ms - question.open_time_ms);
  const leftMs = Math.min(total, Math.max(0, question.close_time_ms - clock.now()));
  return { seconds: Math.ceil(leftMs / 1000), fraction: Math.min(1, leftMs / total), leftMs };
}

export class RequestError extends Error {
  constructor(reply) {
    super(reply.message || reply.code);
    this.code = reply.code;
    this.reason = reply.reason ?? "";
    this.retryable = Boolean(reply.retryable);
  }
}

/**
 * One WebSocket to the edge that comes back by itself: after a drop it reconnects with exponential
 * backoff and jitter (so a restarted edge is not hit by every client at once) and calls `onOpen` again,
 * where the page re-identifies itself (resume or host_quiz).
 */
export class Connection {
  #ws = null;
  #nextId = 1;
  #pending = new Map();
  #attempt = 0;
  #stopped = false;

  constructor({ onPush, onOpen, onStatus }) {
    this.clock = new ServerClock();
    this.onPush = onPush;
    this.onOpen = onOpen;
    this.onStatus = onStatus || (() => {});
  }

  start() {
    this.#stopped = false;
    this.#connect();
  }

  stop() {
    this.#stopped = true;
    this.#ws?.close();
  }

  get open() {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  #connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.#ws = ws;
    this.onStatus("connecting");
    ws.addEventListener("open", () => {
      this.#attempt = 0;
      this.onStatus("online");
      this.#syncClock();
      Promise.resolve(this.onOpen(this)).catch((error) => console.error("reconnecting failed", error));
    });
    ws.addEventListener("message", (event) => this.#receive(event.data));
    ws.addEventListener("close", () => {
      if (this.#ws !== ws) return;
      for (const { reject } of this.#pending.values()) reject(new RequestError({ code: "disconnected" }));
      this.#pending.clear();
      if (this.#stopped) {
        this.onStatus("offline");
        return;
      }
      this.onStatus("reconnecting");
      const delay = Math.min(10_000, 500 * 2 ** this.#attempt) * (0.5 + Math.random() / 2);
      this.#attempt += 1;
      setTimeout(() => this.#connect(), delay);
    });
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    const waiting = message.id === undefined ? undefined : this.#pending.get(message.id);
    if (waiting) {
      this.#pending.delete(message.id);
      if (message.type === "error") waiting.reject(new RequestError(message));
      else waiting.resolve(message);
      return;
    }
    if (message.state?.server_time_ms) this.clock.hint(message.state.server_time_ms);
    this.onPush(message);
  }

  /** Sends a request; resolves with its reply, or rejects with a RequestError carrying the error code. */
  request(type, fields = {}) {
    if (!this.open) return Promise.reject(new RequestError({ code: "disconnected", message: "not connected" }));
    const id = String(this.#nextId++);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  async #syncClock() {
    for (let i = 0; i < 3; i += 1) {
      const sentAt = Date.now();
      try {
        const pong = await this.request("ping");
        this.clock.sample(pong.server_time_ms, sentAt, Date.now());
      } catch {
        return;
      }
    }
  }
}

/** Shows the connection's status in a small banner; hidden while online. */
export function statusBanner(node) {
  const texts = {
    connecting: "Connecting…",
    reconnecting: "Connection lost — reconnecting…",
    offline: "Disconnected",
  };
  return (status) => {
    node.hidden = status === "online";
    node.textContent = texts[status] || "";
  };
}

/**
 * Renders leaderboard entries into an `<ol>`: rank, nickname (as text), score. `options.me` marks the
 * viewer's own row; `options.action(entry)` may return a node (e.g. a kick button) for each row.
 */
export function renderLeaderboard(list, entries, options = {}) {
  fill(
    list,
    entries.map((entry) =>
      h(
        "li",
        { class: entry.player_id === options.me ? "me" : null, dataset: { playerId: entry.player_id } },
        h("span", { class: "rank", text: entry.rank }),
        h("span", { class: "nickname", text: entry.nickname }),
        h("span", { class: "score", text: formatNumber(entry.score) }),
        options.action ? options.action(entry) : null,
      ),
    ),
  );
}

/** The final podium: second, first, third from left to right, as on a real podium. */
export function renderPodium(node, top) {
  const places = [top[1], top[0], top[2]];
  const classes = ["second", "first", "third"];
  fill(
    node,
    places.map((entry, i) =>
      entry
        ? h(
            "div",
            { class: `place ${classes[i]}`, dataset: { rank: entry.rank } },
            h("span", { class: "nickname", text: entry.nickname }),
            h("span", { class: "score", text: `${formatNumber(entry.score)} pts` }),
            h("span", { class: "step", text: entry.rank }),
          )
        : h("div", { class: `place ${classes[i]} empty` }),
    ),
  );
}

export const CHOICE_SHAPES = ["▲", "◆", "●", "■", "★", "✚"];

/** Bars of how many players picked each choice, the correct ones marked. */
export function renderChoiceCounts(node, choices, results) {
  const counts = results.choice_counts || [];
  const most = Math.max(1, ...counts);
  fill(
    node,
    choices.map((text, i) =>
      countRow(`choice-${i}`, text, counts[i] || 0, most, results.correct_choices.includes(i), CHOICE_SHAPES[i]),
    ),
  );
}

/** What each kind of question asks players to do, as the pages say it. */
export const KIND_LABELS = {
  single_choice: "Choose one",
  multiple_select: "Choose every right answer",
  true_false: "True or false?",
  type_answer: "Type the answer",
  ordering: "Put them in order",
  estimate: "Estimate",
  poll: "Poll — no points",
};

/** The URL of a stored picture or clip; media IDs are hex, served by this edge. */
export const mediaUrl = (mediaId) => `/media/${encodeURIComponent(mediaId)}`;

/** A question's picture and audio clip, if it has them. */
export function renderMedia(node, question) {
  fill(
    node,
    question.image ? h("img", { class: "question-image", src: mediaUrl(question.image), alt: "" }) : null,
    question.audio ? h("audio", { class: "question-audio", controls: true, src: mediaUrl(question.audio) }) : null,
  );
  node.hidden = !question.image && !question.audio;
}

/** A number as authored (1969, not 1,969; at most 6 decimals, as estimates have). */
export const plainNumber = (n) => String(Number(Number(n).toFixed(6)));

/** "2/3" → "2/3 of the points"; the exact credit an answer earned before the speed factor. */
export function creditText(credit) {
  return `${credit} of the points`;
}

function countRow(classes, text, count, most, correct, shape) {
  const bar = h("span", { class: "bar" });
  bar.style.setProperty("--share", String(count / Math.max(1, most)));
  return h(
    "li",
    { class: `${classes}${correct ? " correct" : ""}` },
    h("span", { class: "shape", text: shape || "", "aria-hidden": "true" }),
    h("span", { class: "text", text }),
    bar,
    h("span", { class: "count", text: count }),
    correct ? h("span", { class: "tick", text: "✓", "aria-label": "correct" }) : h("span"),
  );
}

/** A closed question's results, by its kind: how many answers fell where, the right ones marked. */
export function renderResults(node, question, results) {
  const tallies = results.tallies || {};
  const revealed = results.question || {};
  const kind = results.kind || "single_choice";
  if (kind === "type_answer") {
    const accepted = revealed.accepted_answers || [];
    const counts = [...accepted.map((_, i) => tallies[`a${i}`] || 0), tallies.other || 0];
    const most = Math.max(...counts);
    fill(node, [
      ...accepted.map((text, i) => countRow("choice-3", text, counts[i], most, true, "✎")),
      countRow("choice-0", "Other answers", tallies.other || 0, most, false, "✎"),
    ]);
    return;
  }
  if (kind === "ordering") {
    const items = revealed.items || [];
    const counts = items.map((_, k) => tallies[`i${k}`] || 0);
    const most = Math.max(tallies.exact || 0, ...counts);
    fill(node, [
      countRow("choice-3", "The whole order right", tallies.exact || 0, most, true, "★"),
      ...items.map((text, k) => countRow(`choice-${k % 6}`, `${k + 1}. ${text}`, counts[k], most, true, "↕")),
    ]);
    return;
  }
  if (kind === "estimate") {
    const estimate = revealed.estimate || {};
    const low = Number(estimate.min);
    const step = (Number(estimate.max) - low) / 10;
    const answer = Number(estimate.answer);
    const counts = Array.from({ length: 10 }, (_, b) => tallies[`b${b}`] || 0);
    const most = Math.max(...counts);
    fill(
      node,
      counts.map((count, b) => {
        const from = low + b * step;
        const to = b === 9 ? Number(estimate.max) : from + step;
        const right = answer >= from && (answer < to || (b === 9 && answer <= to));
        return countRow("choice-1", `${plainNumber(from)} – ${plainNumber(to)}`, count, most, right, "#");
      }),
    );
    return;
  }
  renderChoiceCounts(node, question.choices, results);
}

// A signed-in user's identity token, handed over by the host application in the URL's fragment
// (`#identity_token=…`), which browsers never send to a server: kept for this tab under `key`, then
// taken out of the address bar so that it is not bookmarked or shared.
export function takeIdentityToken(key) {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("identity_token");
  if (given) {
    sessionStorage.setItem(key, given);
    fragment.delete("identity_token");
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(key);
}
