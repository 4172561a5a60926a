// Many EventSources from one page: over HTTP/1.1 only 6 could be open at once; over HTTP/2 all are.
const n = Number(params.get('n'));
const nav = performance.getEntriesByType('navigation')[0];
report({ kind: 'protocol', protocol: nav ? nav.nextHopProtocol : null });
for (let i = 0; i < n; i++) {
  const es = new EventSource('/events/many-' + i);
  es.onopen = () => report({ kind: 'open', i });
  es.onmessage = (e) => report(Object.assign(eventReport('message', e), { i }));
  es.onerror = () => report({ kind: 'error', i, readyState: es.readyState });
}
