// One EventSource on a hub channel: every open, message, named event, sse-reset and error is reported.
// `lastEventId` (optional) resumes through the hub's query parameter, since a page cannot set the header.
let url = '/events/' + encodeURIComponent(params.get('channel'));
if (params.has('lastEventId')) url += '?lastEventId=' + encodeURIComponent(params.get('lastEventId'));
const es = new EventSource(url);
es.onopen = () => report({ kind: 'open', readyState: es.readyState });
es.onmessage = (e) => report(eventReport('message', e));
es.addEventListener('named', (e) => report(eventReport('named', e)));
es.addEventListener('sse-reset', (e) => report(eventReport('sse-reset', e)));
es.onerror = () => report({ kind: 'error', readyState: es.readyState });
