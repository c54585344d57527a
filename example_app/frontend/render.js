// Plain DOM rendering of the client's current state. Item rows are kept and updated in place,
// so a checkbox being clicked is never swapped out from under the pointer.

const rows = new Map(); // item id -> its <li>

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function newRow(item, { onToggle, onDelete }) {
  const checkbox = element('input', { type: 'checkbox' });
  checkbox.addEventListener('change', () => onToggle(item, checkbox.checked));
  const remove = element('button', { className: 'link', textContent: 'delete' });
  remove.addEventListener('click', () => onDelete(item));
  const text = element('span', { className: 'text' });
  const picture = element('span', { className: 'picture' });
  // only its owner ever receives a private item, so the mark is for them
  const mark = element('span', {
    className: 'private', textContent: item.access ? 'private' : '', title: 'Only you see this',
  });
  return element('li', {}, checkbox, text, mark, picture, remove);
}

function update(row, item) {
  const [checkbox, text, , picture] = row.children;
  checkbox.checked = item.get('done');
  row.classList.toggle('done', item.get('done'));
  text.textContent = item.get('text');
  const image = item.get('image'); // an EntityFile: url is null until it is loaded
  const state = image ? (image.url ?? (image.failed ? 'failed' : 'loading')) : '';
  if (picture.dataset.state === state) return;
  picture.dataset.state = state;
  if (image?.url) picture.replaceChildren(element('img', { src: image.url, alt: '' }));
  else picture.textContent = { '': '', loading: 'image…', failed: 'no image yet' }[state];
}

export function renderItems(container, items, handlers) {
  const sorted = [...items].sort((a, b) => a.get('createdAt') - b.get('createdAt'));
  const wanted = sorted.map((item) => {
    const id = item.get('id');
    if (!rows.has(id)) rows.set(id, newRow(item, handlers));
    update(rows.get(id), item);
    return rows.get(id);
  });
  for (const [id, row] of rows) if (!wanted.includes(row)) rows.delete(id);
  const inOrder =
    wanted.length === container.children.length &&
    wanted.every((row, index) => container.children[index] === row);
  if (!inOrder) container.replaceChildren(...wanted);
}

export function renderPeople(container, self, peers) {
  const others = Object.values(peers).map((peer) => peer.profile?.name ?? peer.id);
  container.replaceChildren(
    element('li', { className: 'me', textContent: `${self.name} (you)` }),
    ...others.sort().map((name) => element('li', { textContent: name })),
  );
}
