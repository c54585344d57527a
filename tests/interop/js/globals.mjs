// Browser globals the Verdant client expects, installed before the store module is evaluated.
// This module must be imported first by driver.mjs (ES module evaluation follows import order).
import 'fake-indexeddb/auto';
import { WebSocket } from 'ws';

// Anything the store logs must not reach stdout, which carries the JSON-lines replies.
for (const level of ['log', 'info', 'debug', 'warn']) {
  console[level] = (...args) => console.error(`[console.${level}]`, ...args);
}

const windowEvents = new EventTarget();
globalThis.window = globalThis;
globalThis.addEventListener = windowEvents.addEventListener.bind(windowEvents);
globalThis.removeEventListener = windowEvents.removeEventListener.bind(windowEvents);
globalThis.dispatchEvent = windowEvents.dispatchEvent.bind(windowEvents);

const documentEvents = new EventTarget();
documentEvents.visibilityState = 'visible';
documentEvents.hidden = false;
globalThis.document = documentEvents;

globalThis.WebSocket = WebSocket;

// Store 5.x reads and writes localStorage (its logger and CLI sync helpers); Node 20 has none.
if (typeof globalThis.localStorage === 'undefined') {
  const items = new Map();
  globalThis.localStorage = {
    getItem: (key) => (items.has(String(key)) ? items.get(String(key)) : null),
    setItem: (key, value) => void items.set(String(key), String(value)),
    removeItem: (key) => void items.delete(String(key)),
    clear: () => items.clear(),
    key: (index) => [...items.keys()][index] ?? null,
    get length() {
      return items.size;
    },
  };
}

if (typeof globalThis.FileReader === 'undefined') {
  globalThis.FileReader = class FileReader {
    constructor() {
      this.result = null;
      this.onload = null;
      this.onerror = null;
    }
    readAsArrayBuffer(blob) {
      blob.arrayBuffer().then(
        (buffer) => {
          this.result = buffer;
          this.onload?.({ target: this });
        },
        (error) => this.onerror?.(error),
      );
    }
  };
}
if (typeof URL.createObjectURL !== 'function') {
  let counter = 0;
  URL.createObjectURL = () => `blob:interop/${++counter}`;
  URL.revokeObjectURL = () => {};
}
