// The npm `eventsource` package as a peer client: prints one JSON line per event
// ({type, data, lastEventId}, for `message` and `named` events) until killed.
// Usage: node client.mjs URL
import { EventSource } from 'eventsource';

const [url] = process.argv.slice(2);
const es = new EventSource(url);
const onEvent = (e) => {
  process.stdout.write(JSON.stringify({ type: e.type, data: e.data, lastEventId: e.lastEventId }) + '\n');
};
es.addEventListener('message', onEvent);
es.addEventListener('named', onEvent);
es.addEventListener('open', () => process.stderr.write('open\n'));
es.addEventListener('error', (e) => process.stderr.write(`error: ${e.message ?? ''} readyState=${es.readyState}\n`));
