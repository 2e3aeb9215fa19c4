// /ws/events from the page: the session cookie authenticates it (same origin). It resumes with
// `since` after a dropped connection, so nothing is missed and nothing comes twice, and says
// how it stands: connecting, live, reconnecting.

const MAX_DELAY = 5000;

export class EventSocket {
  constructor({ query = {}, since = null, onEvent, onStatus = () => {}, onControl = () => {} }) {
    this.query = query;
    this.last = since;        // the newest id delivered (resume after it)
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onControl = onControl;
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.wasLive = false;
    this.refill = null;       // after "lagged": deliver the missed ids, skip those seen already
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
  }

  url() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(this.query)) if (v) q.set(k, v);
    const since = this.refill ? this.refill.from - 1 : this.last;
    if (since !== null && since !== undefined) q.set("since", String(since));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/ws/events?${q}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus(this.wasLive ? "reconnecting" : "connecting", this.attempt);
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onmessage = (message) => {
      if (this.ws !== ws) return;
      let msg;
      try { msg = JSON.parse(message.data); } catch (err) { return; }
      if ("control" in msg) this.control(ws, msg);
      else this.event(msg);
    };
    ws.onclose = (closed) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (closed.code === 4401) {
        window.dispatchEvent(new CustomEvent("stackward:signedout"));
        return;
      }
      this.attempt += 1;
      this.onStatus("reconnecting", this.attempt);
      const delay = Math.min(MAX_DELAY, 250 * 2 ** Math.min(this.attempt - 1, 5));
      this.timer = setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
    };
  }

  event(msg) {
    const refill = this.refill;
    if (refill) {
      // Replaying what was missed: ids after the gap were delivered before "lagged" came.
      if (msg.id > refill.to && msg.id <= refill.seen) return;
      if (msg.id <= refill.to) refill.from = msg.id + 1;
      if (msg.id > refill.seen) this.refill = null;
    } else if (this.last !== null && msg.id <= this.last) {
      return;
    }
    if (this.last === null || msg.id > this.last) this.last = msg.id;
    this.onEvent(msg);
  }

  control(ws, msg) {
    switch (msg.control) {
      case "live":
        if (this.last === null) this.last = msg.last;
        if (this.refill && msg.last >= this.refill.seen) this.refill = null;
        this.attempt = 0;
        this.onStatus("live", 0, this.wasLive);
        this.wasLive = true;
        this.onControl(msg);
        break;
      case "lagged":
        // Missed first..last: reconnect and take them from the store.
        this.refill = { from: msg.first, to: msg.last, seen: this.last };
        ws.close(1000);
        break;
      case "expired":
        this.onControl(msg);  // pruned before it could be replayed: the view reloads
        break;
      default:
        break;
    }
  }
}
