// Plain DOM rendering: the list and the people, redrawn from the client's current state.

function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

export function renderItems(container, items, { onToggle, onDelete }) {
  const sorted = [...items].sort((a, b) => a.get('createdAt') - b.get('createdAt'));
  container.replaceChildren(
    ...sorted.map((item) => {
      const done = item.get('done');
      const checkbox = element('input', { type: 'checkbox', checked: done });
      checkbox.addEventListener('change', () => onToggle(item, checkbox.checked));
      const remove = element('button', { className: 'link', textContent: 'delete' });
      remove.addEventListener('click', () => onDelete(item));
      const text = element('span', { className: 'text', textContent: item.get('text') });
      const row = element('li', { className: done ? 'done' : '' }, checkbox, text);
      const image = item.get('image');
      if (image?.url) row.append(element('img', { src: image.url, alt: '' }));
      else if (image) row.append(element('span', { className: 'hint', textContent: 'image…' }));
      row.append(remove);
      return row;
    }),
  );
}

export function renderPeople(container, self, peers) {
  const others = Object.values(peers).map((peer) => peer.profile?.name ?? peer.id);
  container.replaceChildren(
    element('li', { className: 'me', textContent: `${self.name} (you)` }),
    ...others.sort().map((name) => element('li', { textContent: name })),
  );
}
