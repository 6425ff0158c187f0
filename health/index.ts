/** Public surface of `health/`: the state machine, its store, the active checker and the wiring glue. */
export * from './types.js';
export * from './state.js';
export * from './store.js';
export * from './probe.js';
export * from './active.js';
export * from './monitor.js';
