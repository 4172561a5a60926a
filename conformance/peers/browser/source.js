// One EventSource on the URL given as ?url= (same origin or not): opens, messages and errors reported.
const es = new EventSource(params.get('url'));
es.onopen = () => report({ kind: 'open', readyState: es.readyState });
es.onmessage = (e) => report(eventReport('message', e));
es.onerror = () => report({ kind: 'error', readyState: es.readyState });
