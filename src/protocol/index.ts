// Platform-neutral protocol module: shared by the gateway and the (browser + Node) client SDK.
export * from './codes.js';
export * from './topic.js';
export * from './messages.js';
export * from './scan.js';
export * from './envelope.js';
