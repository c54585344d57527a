// From a page on another origin, in Debian's Chromium: the requests a sync client makes
// (credentials included, a bearer token, a long-poll's Prefer header, a file upload), against a
// server that allows the page's origin and against one that does not.
//   node tests/cors_browser/cross_origin.mjs <page url> <json: {allowed, closed, token}>
// Prints one JSON object with what the page could see.
import { chromium } from 'playwright-core';

const [pageUrl, setup] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(pageUrl);
  const result = await page.evaluate(async ({ allowed, closed, token }) => {
    const sync = (base, headers = {}) => fetch(`${base}/sync`, {
      method: 'POST',
      credentials: 'include',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, ...headers },
      body: JSON.stringify({ messages: [] }),
    });
    const out = { origin: location.origin };
    const polled = await sync(allowed, { Prefer: 'wait=1' });
    out.poll = {
      status: polled.status,
      preferenceApplied: polled.headers.get('Preference-Applied'),
      body: await polled.json(),
    };
    const refused = await fetch(`${allowed}/sync`, {
      method: 'POST', credentials: 'include',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer nope' },
      body: '{"messages": []}',
    });
    out.refused = { status: refused.status, body: await refused.json() };
    const form = new FormData();
    form.append('file', new File(['cross-origin bytes'], 'note.txt', { type: 'text/plain' }));
    const uploaded = await fetch(`${allowed}/sync/files/f1`, {
      method: 'POST', credentials: 'include', headers: { Authorization: `Bearer ${token}` }, body: form,
    });
    out.upload = uploaded.status;
    const info = await fetch(`${allowed}/sync/files/f1`, {
      credentials: 'include', headers: { Authorization: `Bearer ${token}` },
    });
    out.info = await info.json();
    out.download = await (await fetch(out.info.url, { credentials: 'include' })).text();
    try {
      await sync(closed);
      out.closed = 'readable';
    } catch (error) {
      out.closed = `blocked: ${error.name}`;
    }
    return out;
  }, JSON.parse(setup));
  console.log(JSON.stringify({ ...result, errors }));
} finally {
  await browser.close();
}
