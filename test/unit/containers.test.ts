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
const compose = parse(read('docker-compose.yml')) as {
  services: Record<string, Service>;
  secrets?: Record<string, { environment?: string; file?: string }>;
};
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

/** The Dockerfile's stages in order: base image, name, and their instructions after FROM. */
function stagesOf(
  steps = dockerfile(),
): Array<{ from: string; name?: string; steps: Array<{ op: string; args: string }> }> {
  const stages: Array<{ from: string; name?: string; steps: Array<{ op: string; args: string }> }> = [];
  for (const step of steps) {
    if (step.op === 'FROM') {
      const [from, as, name] = step.args.split(/\s+/);
      stages.push({ from, name: as?.toUpperCase() === 'AS' ? name : undefined, steps: [] });
    } else stages.at(-1)?.steps.push(step);
  }
  return stages;
}

/** The instructions of a stage and of the stages it builds on, in order. */
function lineage(name: string): Array<{ op: string; args: string }> {
  const stages = stagesOf();
  const stage = stages.find((s) => s.name === name);
  assert.ok(stage, `a stage named ${name}`);
  const parent = stages.find((s) => s.name === stage.from);
  return [...(parent?.name ? lineage(parent.name) : []), ...stage.steps];
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
  for (const name of names)
    assert.ok(
      KNOWN_ENV.has(name),
      `${name} is not a config key (config/default.json) nor one of ${EXTRA_ENV.join(', ')}`,
    );
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
  if (source.environment)
    assert.match(
      read('.env.example'),
      new RegExp(`^${source.environment}=amqps?://`, 'm'),
      `.env.example sets ${source.environment}`,
    );
});

test('the scorer scales with --scale: no container_name and no fixed host port', () => {
  assert.equal(scorer.container_name, undefined);
  assert.equal(scorer.ports, undefined);
});

test('the scorer mounts the models folder, and the broker is the management image with credentials from .env', () => {
  assert.ok(
    scorer.volumes?.some((v) => /^\.\/models:/.test(v) && v.split(':')[1] === envOf(scorer).MODEL_DIR),
    'models/ mounted at MODEL_DIR',
  );
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
  assert.ok(
    read('.gitignore')
      .split('\n')
      .some((l) => l.trim() === '.env'),
    '.env in .gitignore',
  );
  const dockerignore = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim());
  for (const kept of ['.env', 'node_modules', '.git'])
    assert.ok(dockerignore.includes(kept), `.dockerignore leaves out ${kept}`);
});

test('the Dockerfile builds on a Node LTS slim image in several stages', () => {
  const steps = dockerfile();
  const args = Object.fromEntries(
    steps
      .filter((s) => s.op === 'ARG')
      .map((s) => {
        const [name, value = ''] = s.args.split('=');
        return [name, value];
      }),
  );
  const stages = stagesOf(steps);
  const froms = stages.map((s) => s.from.replace(/\$\{(\w+)\}/g, (_, n: string) => args[n] ?? ''));
  assert.ok(froms.length >= 2, 'multi-stage');
  // A stage may build on an earlier one (the python image on the app stage); the others are node slim images.
  const earlier = (image: string, i: number) => stages.slice(0, i).some((s) => s.name === image);
  for (const image of froms.filter((image, i) => !earlier(image, i))) {
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
  const stageStart = steps
    .slice(0, install)
    .map((s) => s.op)
    .lastIndexOf('FROM');
  assert.ok(npmrc > stageStart && npmrc < install, '.npmrc is copied in the same stage, before npm ci');
  assert.match(read('.npmrc'), /^onnxruntime-node-install=skip$/m);

  const lastFrom = steps.map((s) => s.op).lastIndexOf('FROM');
  const user = steps
    .slice(lastFrom)
    .filter((s) => s.op === 'USER')
    .at(-1);
  assert.ok(user, 'a USER in the final stage');
  assert.ok(!/^(root|0)(:|$)/.test(user.args), `USER ${user.args} is not root`);

  const cmd = steps.filter((s) => s.op === 'CMD').at(-1);
  assert.deepEqual(JSON.parse(cmd!.args), ['node', '--import', 'tsx', 'src/main.ts']);
  const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
  assert.ok(pkg.dependencies.tsx, 'tsx is a runtime dependency, so npm ci --omit=dev keeps it');
  assert.ok(pkg.dependencies.sharp, 'sharp (images) is a runtime dependency');
  assert.ok(
    steps.slice(install + 1).some((s) => s.op === 'RUN' && /require\('sharp'\)/.test(s.args)),
    'the build loads sharp after npm ci, so a missing platform binary fails it',
  );

  for (const step of steps.filter((s) => s.op === 'COPY' && !s.args.startsWith('--from'))) {
    for (const source of step.args.split(/\s+/).slice(0, -1))
      assert.ok(existsSync(join(ROOT, source)), `COPY source ${source} exists`);
  }
});

test("the default image (the last stage) has no Python; the python target adds Debian's python3 and a virtual environment that PYTHON names, and runs the consumer the same way", () => {
  const stages = stagesOf();
  const last = stages.at(-1)!;
  assert.equal(last.name, 'runtime', 'a plain `docker build` makes the image without Python');
  assert.ok(
    !lineage('runtime').some((s) => s.op === 'RUN' && /python/i.test(s.args)),
    'no Python in the default image',
  );

  const python = lineage('python');
  const install = python.find((s) => s.op === 'RUN' && /apt-get install\b/.test(s.args));
  assert.ok(install, 'python3 from Debian');
  assert.match(install.args, /\bpython3\b/);
  assert.match(install.args, /\$\{?PYTHON_APT_PACKAGES\}?/, "the script's Debian packages are a build argument");
  const venv = /python3 -m venv --system-site-packages (\S+)/.exec(install.args)?.[1];
  assert.ok(venv, 'a virtual environment that also sees the Debian packages');
  const env = python
    .filter((s) => s.op === 'ENV')
    .map((s) => s.args)
    .join(' ');
  assert.match(env, new RegExp(`\\bPYTHON=${venv}/bin/python\\b`), 'PYTHON names the venv interpreter');
  assert.ok(CONFIG_KEYS.includes('PYTHON'), 'PYTHON is a config key');
  const user = python.filter((s) => s.op === 'USER').at(-1);
  assert.ok(user && !/^(root|0)(:|$)/.test(user.args), 'the python image runs as a non-root user');
  const cmds = stages
    .filter((s) => s.name === 'python' || s.name === 'runtime')
    .map((s) => s.steps.filter((x) => x.op === 'CMD').at(-1)?.args);
  assert.deepEqual(
    cmds.map((c) => JSON.parse(c!)),
    [
      ['node', '--import', 'tsx', 'src/main.ts'],
      ['node', '--import', 'tsx', 'src/main.ts'],
    ],
  );
});

test('compose builds the default image unless SCORER_TARGET names the python one, with only build arguments the Dockerfile declares', () => {
  const build = scorer.build as { target?: string; args?: Record<string, string> };
  const target = /^\$\{SCORER_TARGET:-(\w+)\}$/.exec(build.target ?? '')?.[1];
  assert.equal(target, 'runtime');
  const names = new Set(stagesOf().map((s) => s.name));
  assert.ok(names.has('python'), 'the python target exists');
  const declared = new Set(
    dockerfile()
      .filter((s) => s.op === 'ARG')
      .map((s) => s.args.split('=')[0]),
  );
  for (const arg of Object.keys(build.args ?? {}))
    assert.ok(declared.has(arg), `build arg ${arg} is an ARG of the Dockerfile`);
  const example = read('.env.example');
  for (const name of ['SCORER_TARGET', ...Object.keys(build.args ?? {})])
    assert.match(example, new RegExp(`^${name}=`, 'm'), `.env.example shows ${name}`);
});
