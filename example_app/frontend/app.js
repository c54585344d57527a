// The list page: open this user's local copy of the library, sync it through flask-verdant,
// and keep the page in step with it.
import { authorization, Client } from '@verdant-web/store';
import { renderItems, renderPeople } from './render.js';
import { migrations, todoSchema } from './schema.js';

const config = JSON.parse(document.getElementById('config').textContent);
const itemsList = document.getElementById('items');
const people = document.getElementById('people');
const status = document.getElementById('status');
const form = document.getElementById('add');

const client = new Client({
  schema: todoSchema,
  oldSchemas: [],
  migrations,
  // one browser database per list and user: another user signing in here starts afresh
  namespace: `todos:${config.library}:${config.user.id}`,
  sync: {
    authEndpoint: config.authEndpoint, // our token route, which knows the session's user
    initialPresence: {},
    defaultProfile: { id: config.user.id, name: config.user.name },
    initialTransport: 'realtime', // a websocket to the sync endpoint while the page is open
    automaticTransportSelection: false,
  },
});

const query = client.items.findAll();
const watched = new Map(); // item id -> unsubscribe functions of the item and its image

function redraw() {
  renderItems(itemsList, query.current, {
    onToggle: (item, done) => item.set('done', done),
    onDelete: (item) => client.items.delete(item.get('id')),
  });
  watch(query.current);
}

// the query reports items that come and go; each item reports its own edits
function watch(items) {
  const ids = new Set(items.map((item) => item.get('id')));
  for (const [itemId, unsubscribes] of watched) {
    if (!ids.has(itemId)) {
      unsubscribes.forEach((unsubscribe) => unsubscribe());
      watched.delete(itemId);
    }
  }
  for (const item of items) {
    if (watched.has(item.get('id'))) continue;
    const unsubscribes = [item.subscribe('change', redraw)];
    const image = item.get('image');
    if (image) unsubscribes.push(image.subscribe('change', redraw));
    watched.set(item.get('id'), unsubscribes);
  }
}

query.subscribe('change', redraw);
client.sync.presence.subscribe('peersChanged', () =>
  renderPeople(people, config.user, client.sync.presence.peers),
);
client.sync.subscribe('onlineChange', (online) => {
  status.textContent = online ? 'Live' : 'Offline: changes are kept and sent on reconnect';
  document.body.dataset.online = online;
});

const attach = form.querySelector('.attach');
form.elements.image.addEventListener('change', () => {
  attach.dataset.file = form.elements.image.files[0]?.name ?? '';
});

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = form.elements.text.value.trim();
  const image = form.elements.image.files[0] ?? null;
  // a private item is stored with an access key: the server sends it to this user alone
  const access = form.elements.private.checked ? authorization.private : undefined;
  if (!text) return;
  await client.items.put({ text, image }, { access });
  form.reset();
  attach.dataset.file = '';
});

renderPeople(people, config.user, client.sync.presence.peers);
redraw();
client.sync.start();
