/** The Kubernetes and KEDA manifests in deploy/kubernetes, checked by reading them (no cluster here). */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { CONFIG_KEYS, EXTRA_ENV, PROJECT_ROOT, loadConfig } from '../../src/config.js';

const DIR = join(PROJECT_ROOT, 'deploy', 'kubernetes');
const KNOWN_ENV = new Set<string>([...CONFIG_KEYS, ...EXTRA_ENV]);

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML manifests; the assertions check their shape
type Doc = { kind: string; metadata: { name: string }; [k: string]: any };
const docs: Doc[] = readdirSync(DIR)
  .filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')
  .flatMap((f) => parseAllDocuments(readFileSync(join(DIR, f), 'utf8')).map((d) => d.toJS() as Doc))
  .filter(Boolean);
const one = (kind: string): Doc => {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};
const deployment = one('Deployment');
const configMap = one('ConfigMap');
const secret = one('Secret');
const scaledObject = one('ScaledObject');
const triggerAuth = one('TriggerAuthentication');
const container = deployment.spec.template.spec.containers[0];

test('the kustomization lists every manifest in the folder', () => {
  const listed = (
    parseAllDocuments(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))[0].toJS() as { resources: string[] }
  ).resources;
  const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
  assert.deepEqual([...listed].sort(), files.sort());
});

test('every environment variable the Deployment and its ConfigMap set is one the config schema reads', () => {
  const names = [...Object.keys(configMap.data), ...(container.env ?? []).map((e: { name: string }) => e.name)];
  for (const name of names)
    assert.ok(KNOWN_ENV.has(name), `${name} is not a config key nor one of ${EXTRA_ENV.join(', ')}`);
  assert.ok(
    container.envFrom.some(
      (e: { configMapRef?: { name: string } }) => e.configMapRef?.name === configMap.metadata.name,
    ),
    'the ConfigMap is the env',
  );
});

test('the ConfigMap values pass the config schema', () => {
  const config = loadConfig({ ...configMap.data, AMQP_URL: 'amqp://u:p@broker:5672' });
  assert.equal(config.httpPort, Number(configMap.data.HTTP_PORT));
});

test('readiness asks /readyz and liveness /healthz, on the port HTTP_PORT sets', () => {
  const port = container.ports.find((p: { name?: string }) => p.name === container.readinessProbe.httpGet.port) ?? {
    containerPort: container.readinessProbe.httpGet.port,
  };
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');
  assert.equal(String(port.containerPort), configMap.data.HTTP_PORT);
});

test('the broker URL is a Secret mounted as a file that AMQP_URL_FILE names', () => {
  const fileEnv = container.env.find((e: { name: string }) => e.name === 'AMQP_URL_FILE');
  assert.ok(fileEnv, 'AMQP_URL_FILE is set');
  assert.ok(
    !container.env.some((e: { name: string }) => e.name === 'AMQP_URL'),
    'AMQP_URL itself is not in the environment',
  );
  const volume = deployment.spec.template.spec.volumes.find(
    (v: { secret?: { secretName: string } }) => v.secret?.secretName === secret.metadata.name,
  );
  assert.ok(volume, 'a volume from the Secret');
  const mount = container.volumeMounts.find((m: { name: string }) => m.name === volume.name);
  const item = volume.secret.items.find((i: { key: string }) => i.key === 'url');
  assert.equal(fileEnv.value, `${mount.mountPath}/${item.path}`);
});

test('the KEDA ScaledObject scales the Deployment on INPUT_QUEUE, authenticated by the same Secret', () => {
  assert.equal(scaledObject.spec.scaleTargetRef.name, deployment.metadata.name);
  const trigger = rabbitTrigger();
  assert.equal(trigger.metadata.mode, 'QueueLength');
  const inputQueue = configMap.data.INPUT_QUEUE ?? loadConfig({}).inputQueue;
  assert.equal(trigger.metadata.queueName, inputQueue);
  assert.equal(trigger.authenticationRef.name, triggerAuth.metadata.name);
  const host = triggerAuth.spec.secretTargetRef.find((r: { parameter: string }) => r.parameter === 'host');
  assert.equal(host.name, secret.metadata.name);
  assert.ok(Object.hasOwn(secretData(), host.key));
});

test('KEDA counts ready plus unacked messages: the management API over HTTP, unacked not excluded', () => {
  const trigger = rabbitTrigger();
  // Over AMQP the scaler counts ready messages only, and scales in pods that still hold unacked work.
  assert.equal(trigger.metadata.protocol, 'http');
  assert.notEqual(String(trigger.metadata.excludeUnacknowledged ?? 'false'), 'true');
  const host = triggerAuth.spec.secretTargetRef.find((r: { parameter: string }) => r.parameter === 'host');
  assert.match(
    secretData()[host.key],
    /^https?:\/\/[^/]+\/(.*)$/,
    'the host KEDA reads is the management API URL, with its vhost path',
  );
  assert.match(secretData().url, /^amqps?:\/\//, 'the pods still read an AMQP URL');
  assert.doesNotThrow(() => loadConfig({ AMQP_URL: secretData().url }), 'which the config accepts');
});

test('the ScaledObject scales to zero and back: minReplicaCount 0 and an activation threshold', () => {
  assert.equal(scaledObject.spec.minReplicaCount, 0);
  assert.ok(scaledObject.spec.maxReplicaCount > 0);
  const activation = rabbitTrigger().metadata.activationValue;
  assert.ok(
    activation !== undefined && Number.isFinite(Number(activation)) && Number(activation) >= 0,
    `activationValue ${activation}`,
  );
  // When the scaler cannot read the queue (not declared yet on a fresh broker), one pod runs and declares it.
  assert.ok(scaledObject.spec.fallback?.replicas >= 1, 'a fallback replica count');
});

test('the per-replica target is at least PREFETCH, so in-flight messages alone do not ask for more pods', () => {
  const value = Number(rabbitTrigger().metadata.value);
  assert.ok(value > 0);
  assert.ok(
    value >= Number(configMap.data.PREFETCH ?? loadConfig({}).prefetch),
    `value ${value} >= PREFETCH ${configMap.data.PREFETCH}`,
  );
});

test('a pod has time to drain: the grace period outlasts SHUTDOWN_GRACE_MS, with room to close the connections', () => {
  const graceMs = deployment.spec.template.spec.terminationGracePeriodSeconds * 1000;
  assert.ok(
    graceMs >= Number(configMap.data.SHUTDOWN_GRACE_MS) + 5000,
    `terminationGracePeriodSeconds ${graceMs / 1000} s vs SHUTDOWN_GRACE_MS ${configMap.data.SHUTDOWN_GRACE_MS}`,
  );
});

function rabbitTrigger(): { metadata: Record<string, string>; authenticationRef: { name: string } } {
  const found = scaledObject.spec.triggers.filter((t: { type: string }) => t.type === 'rabbitmq');
  assert.equal(found.length, 1, 'one rabbitmq trigger');
  return found[0];
}

function secretData(): Record<string, string> {
  if (secret.stringData) return secret.stringData;
  return Object.fromEntries(
    Object.entries(secret.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
  );
}
