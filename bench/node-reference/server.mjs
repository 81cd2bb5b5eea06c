// The Node peer of the fan-out benchmark: graphql-js + graphql-ws (and graphql-http for
// the trigger mutation), with the same schema shape Mark-1's taskUpdates subscribers and
// reportProgress publisher use. No auth, no database: an in-memory task map and an
// in-process pub/sub, the way graphql-ws's own recipes fan out. Each subscriber's
// document is executed per event (graphql-js subscriptions are not multiplexed).
//
//   node server.mjs <port>      prints "ready" once listening
import http from 'node:http';
import { EventEmitter } from 'node:events';
import { buildSchema } from 'graphql';
import { createHandler } from 'graphql-http/lib/use/http';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';

const schema = buildSchema(`
  type Task { id: ID! title: String! status: String! progress: Float! message: String updatedAt: String! }
  type Query { task(id: ID!): Task }
  type Mutation {
    createTask(title: String!): Task!
    reportProgress(taskId: ID!, progress: Float!, message: String): Task!
  }
  type Subscription { taskUpdates(taskId: ID): Task! }
`);

const tasks = new Map();
const bus = new EventEmitter();
bus.setMaxListeners(0);
let nextId = 1;

/** An async iterator of one subscriber's matching task states, unbounded like PubSub's. */
function subscribe(taskId) {
  const queue = [];
  let wake = null;
  let done = false;
  const listener = (task) => {
    if (taskId != null && task.id !== taskId) return;
    queue.push({ taskUpdates: task });
    if (wake) { wake(); wake = null; }
  };
  bus.on('task', listener);
  const stop = () => { done = true; bus.off('task', listener); if (wake) { wake(); wake = null; } };
  return {
    [Symbol.asyncIterator]() { return this; },
    async next() {
      while (!queue.length && !done) await new Promise((resolve) => { wake = resolve; });
      return done && !queue.length ? { done: true, value: undefined } : { done: false, value: queue.shift() };
    },
    async return() { stop(); return { done: true, value: undefined }; },
    async throw(error) { stop(); throw error; },
  };
}

const root = {
  task: ({ id }) => tasks.get(id),
  createTask: ({ title }) => {
    const task = { id: String(nextId++), title, status: 'RUNNING', progress: 0, message: null, updatedAt: new Date().toISOString() };
    tasks.set(task.id, task);
    bus.emit('task', task);
    return task;
  },
  reportProgress: ({ taskId, progress, message }) => {
    const previous = tasks.get(taskId);
    if (!previous) throw new Error('task not found');
    const task = { ...previous, progress, message: message ?? null, updatedAt: new Date().toISOString() };
    tasks.set(taskId, task);
    bus.emit('task', task);
    return task;
  },
  taskUpdates: ({ taskId }) => subscribe(taskId ?? null),
};

const handler = createHandler({ schema, rootValue: root });
const server = http.createServer((req, res) => {
  if (req.url === '/readyz') { res.writeHead(200); res.end('ok'); return; }
  if (req.url.startsWith('/graphql')) { handler(req, res); return; }
  res.writeHead(404); res.end();
});
const wss = new WebSocketServer({ server, path: '/graphql', perMessageDeflate: false });
useServer({ schema, roots: { query: root, mutation: root, subscription: root } }, wss);

const port = Number(process.argv[2] || 4000);
server.listen(port, '127.0.0.1', () => console.log('ready'));
