/**
 * amqplib's own frame codec, loaded by file: its package exports hide it. The reply encoder's test compares
 * bytes against it, and the benchmark's stages decode deliveries with it.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const root = require.resolve('amqplib').replace(/channel_api\.js$/, '');

export const defs = require(`${root}lib/defs.js`) as {
  BasicPublish: number;
  BasicDeliver: number;
  BasicProperties: number;
  encodeMethod(id: number, channel: number, fields: object): Buffer;
  encodeProperties(id: number, channel: number, size: number, fields: object): Buffer;
};

export const frames = require(`${root}lib/frame.js`) as {
  makeBodyFrame(channel: number, body: Buffer): Buffer;
  parseFrame(bytes: Buffer): { rest: Buffer } | false;
  decodeFrame(frame: object): { fields?: object; content?: Buffer };
};
