/**
 * `npm run cluster`: a three-node RabbitMQ cluster on this machine with HAProxy in front, for trying the
 * consumer against a cluster. Prints the URLs; Ctrl-C (or SIGTERM) stops HAProxy and every node and
 * removes their folders. Needs rabbitmq-server and haproxy installed (Debian: apt-get install haproxy).
 *
 *   npm run cluster                 # three nodes + HAProxy
 *   npm run cluster -- --no-haproxy # three nodes; use the printed list as AMQP_URL
 */
import { haproxyAvailable, startCluster } from '../test/support/cluster.js';

const withHaproxy = !process.argv.includes('--no-haproxy');
if (withHaproxy && !haproxyAvailable()) {
  console.error('haproxy not found: install it (apt-get install -y haproxy) or run with --no-haproxy');
  process.exit(1);
}

console.log('starting three RabbitMQ nodes (a minute or so)...');
const cluster = await startCluster({ haproxy: withHaproxy });
let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping HAProxy and the nodes...');
  await cluster.stop();
  process.exit(0);
};
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());

for (const n of cluster.nodes) console.log(`node ${n.nodeName}  ${n.url}`);
if (cluster.url) console.log(`\nHAProxy:            AMQP_URL=${cluster.url}`);
console.log(`every node's address: AMQP_URL=${cluster.urls}`);
console.log(
  `\nrabbitmqctl for a node: HOME=${cluster.nodes[0].dir}/home /usr/lib/rabbitmq/bin/rabbitmqctl -n ${cluster.nodes[0].nodeName} cluster_status`,
);
console.log('\nCtrl-C stops it all.');
// Keep the event loop alive until a signal.
setInterval(() => {}, 1 << 30);
