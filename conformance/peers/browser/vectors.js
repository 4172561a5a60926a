// Chromium as the reference parser: each vector's exact bytes come from /vector/{name}; the page
// listens for every event type either parser is expected to produce, collects what Chromium
// dispatches until the stream ends (the error event), then closes the source so it never reconnects.
async function runVector(v) {
  return new Promise((resolve) => {
    const events = [];
    const es = new EventSource('/vector/' + encodeURIComponent(v.name));
    const onEvent = (e) => events.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
    for (const t of v.types) es.addEventListener(t, onEvent);
    const finish = (how) => { es.close(); resolve({ kind: 'vector', name: v.name, how, events }); };
    const timer = setTimeout(() => finish('timeout'), 5000);
    es.onerror = () => { clearTimeout(timer); finish('ended'); };
  });
}
(async () => {
  const list = await (await fetch('/vectors.json')).json();
  for (const v of list) report(await runVector(v));
  report({ kind: 'done', count: list.length });
})();
