// Shared by every test page: report(obj) POSTs obj to /collect, strictly in call order.
let reportSeq = 0;
let reportChain = Promise.resolve();
function report(obj) {
  obj.seq = reportSeq++;
  const body = JSON.stringify(obj);
  reportChain = reportChain.then(() =>
    fetch('/collect', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      .catch(() => {}));
}
function eventReport(kind, e) {
  return { kind, type: e.type, data: e.data, lastEventId: e.lastEventId };
}
const params = new URLSearchParams(location.search);
window.addEventListener('error', (e) => report({ kind: 'page-error', message: String(e.message) }));
