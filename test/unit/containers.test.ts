/**
 * No Docker engine runs here, so the Dockerfile and docker-compose.yml are checked by reading them:
 * what the scorer service needs to boot, scale and stay healthy.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { CONFIG_KEYS, EXTRA_ENV, PROJECT_ROOT } from '../../src/config.js';

const ROOT = PROJECT_ROOT;
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const KNOWN_ENV = new Set<string>([...CONFIG_KEYS, ...EXTRA_ENV]);

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string } | string;
  environment?: Record<string, unknown> | string[];
  depends_on?: Record<string, { condition?: string }> | string[];
  healthcheck?: { test: string[] | string };
  secrets?: Array<string | { source: string; target?: string }>;
  container_name?: string;
  ports?: unknown[];
  volumes?: string[];
}
const compose = parse(read('docker-compose.yml')) as { services: Record<string, Service>; secrets?: Record<string, { environment?: string; file?: string }> };
const scorer = compose.services.scorer;
const broker = compose.services.rabbitmq;

function envOf(service: Service): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => [e.split('=')[0], e.slice(e.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v ?? '')]));
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerfile(): Array<{ op: string; args: string }> {
  const text = read('Dockerfile').replace(/\\\r?\n/g, ' ');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

test('the scorer service builds from this folder with a Dockerfile that exists', () => {
  const build = typeof scorer.build === 'string' ? { context: scorer.build } : scorer.build!;
  const context = join(ROOT, build.context);
  assert.ok(statSync(context).isDirectory(), `build context ${build.context}`);
  assert.ok(existsSync(join(context, build.dockerfile ?? 'Dockerfile')), 'the Dockerfile');
});

test('every environment variable the scorer service sets is one the config schema reads', () => {
  const names = Object.keys(envOf(scorer));
  assert.ok(names.length > 0);
  for (const name of names) assert.ok(KNOWN_ENV.has(name), `${name} is not a config key (config/default.json) nor one of ${EXTRA_ENV.join(', ')}`);
});

test('the scorer waits for a healthy broker, and its own healthcheck asks /readyz', () => {
  const dependsOn = scorer.depends_on as Record<string, { condition?: string }>;
  assert.equal(dependsOn.rabbitmq?.condition, 'service_healthy');
  assert.ok(broker.healthcheck, 'the broker has a healthcheck for service_healthy to wait on');
  const check = [scorer.healthcheck?.test ?? []].flat().join(' ');
  assert.match(check, /\/readyz\b/);
  assert.match(check, new RegExp(`:${envOf(scorer).HTTP_PORT}/readyz`), 'the healthcheck asks the port HTTP_PORT sets');
});

test('the broker URL reaches the scorer as a secret file named by AMQP_URL_FILE, not as AMQP_URL', () => {
  const env = envOf(scorer);
  assert.equal(env.AMQP_URL, undefined);
  const secrets = (scorer.secrets ?? []).map((s) => (typeof s === 'string' ? { source: s } : s));
  const secret = secrets.find((s) => env.AMQP_URL_FILE === `/run/secrets/${s.target ?? s.source}`);
  assert.ok(secret, `a secret mounted at AMQP_URL_FILE (${env.AMQP_URL_FILE})`);
  const source = compose.secrets?.[secret.source];
  assert.ok(source?.environment || source?.file, `top-level secret ${secret.source} has a source`);
  if (source.environment) assert.match(read('.env.example'), new RegExp(`^${source.environment}=amqps?://`, 'm'), `.env.example sets ${source.environment}`);
});

test('the scorer scales with --scale: no container_name and no fixed host port', () => {
  assert.equal(scorer.container_name, undefined);
  assert.equal(scorer.ports, undefined);
});

test('the scorer mounts the models folder, and the broker is the management image with credentials from .env', () => {
  assert.ok(scorer.volumes?.some((v) => /^\.\/models:/.test(v) && v.split(':')[1] === envOf(scorer).MODEL_DIR), 'models/ mounted at MODEL_DIR');
  assert.match(broker.image ?? '', /^rabbitmq:[\w.-]*management/);
  const env = envOf(broker);
  assert.match(env.RABBITMQ_DEFAULT_USER, /^\$\{RABBITMQ_USER[:?}]/);
  assert.match(env.RABBITMQ_DEFAULT_PASS, /^\$\{RABBITMQ_PASSWORD[:?}]/);
});

test('.env.example sets every variable docker-compose.yml requires, and .env itself is gitignored', () => {
  const example = read('.env.example');
  const required = [...read('docker-compose.yml').matchAll(/\$\{(\w+):\?/g)].map((m) => m[1]);
  assert.ok(required.length > 0);
  for (const name of required) assert.match(example, new RegExp(`^${name}=`, 'm'), `.env.example sets ${name}`);
  assert.ok(read('.gitignore').split('\n').some((l) => l.trim() === '.env'), '.env in .gitignore');
  const dockerignore = read('.dockerignore').split('\n').map((l) => l.trim());
  for (const kept of ['.env', 'node_modules', '.git']) assert.ok(dockerignore.includes(kept), `.dockerignore leaves out ${kept}`);
});

test('the Dockerfile builds on a Node LTS slim image in several stages', () => {
  const steps = dockerfile();
  const args = Object.fromEntries(
    steps.filter((s) => s.op === 'ARG').map((s) => {
      const [name, value = ''] = s.args.split('=');
      return [name, value];
    }),
  );
  const froms = steps.filter((s) => s.op === 'FROM').map((s) => s.args.split(/\s+/)[0].replace(/\$\{(\w+)\}/g, (_, n: string) => args[n] ?? ''));
  assert.ok(froms.length >= 2, 'multi-stage');
  for (const image of froms) {
    const m = /^node:(\d+)(?:\.\d+)*-(?:[\w.]+-)?slim$/.exec(image);
    assert.ok(m, `${image} is a node slim image`);
    const major = Number(m[1]);
    // Even majors are LTS lines; from Node 27 on, every major becomes one.
    assert.ok(major >= 22 && (major % 2 === 0 || major >= 27), `node ${major} is a supported LTS line`);
  }
});

test('the Dockerfile installs production dependencies with the .npmrc in place, runs as a non-root user, and starts the consumer through tsx', () => {
  const steps = dockerfile();
  const install = steps.findIndex((s) => s.op === 'RUN' && /\bnpm ci\b/.test(s.args));
  assert.ok(install >= 0, 'RUN npm ci');
  assert.match(steps[install].args, /npm ci\b[^&;]*--omit=dev/);
  const npmrc = steps.findIndex((s) => s.op === 'COPY' && s.args.split(/\s+/).includes('.npmrc'));
  const stageStart = steps.slice(0, install).map((s) => s.op).lastIndexOf('FROM');
  assert.ok(npmrc > stageStart && npmrc < install, '.npmrc is copied in the same stage, before npm ci');
  assert.match(read('.npmrc'), /^onnxruntime-node-install=skip$/m);

  const lastFrom = steps.map((s) => s.op).lastIndexOf('FROM');
  const user = steps.slice(lastFrom).filter((s) => s.op === 'USER').at(-1);
  assert.ok(user, 'a USER in the final stage');
  assert.ok(!/^(root|0)(:|$)/.test(user.args), `USER ${user.args} is not root`);

  const cmd = steps.filter((s) => s.op === 'CMD').at(-1);
  assert.deepEqual(JSON.parse(cmd!.args), ['node', '--import', 'tsx', 'src/main.ts']);
  const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
  assert.ok(pkg.dependencies.tsx, 'tsx is a runtime dependency, so npm ci --omit=dev keeps it');
  assert.ok(pkg.dependencies.sharp, 'sharp (images) is a runtime dependency');
  assert.ok(steps.slice(install + 1).some((s) => s.op === 'RUN' && /require\('sharp'\)/.test(s.args)), 'the build loads sharp after npm ci, so a missing platform binary fails it');

  for (const step of steps.filter((s) => s.op === 'COPY' && !s.args.startsWith('--from'))) {
    for (const source of step.args.split(/\s+/).slice(0, -1)) assert.ok(existsSync(join(ROOT, source)), `COPY source ${source} exists`);
  }
});
