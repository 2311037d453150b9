#!/usr/bin/env node
// Patches and rebuilds the native part of the `netlink` package (0.3.0, pinned).
//
// 1. ENOBUFS. When events arrive faster than they are read, the kernel marks a netlink
// socket with ENOBUFS, which poll() reports as POLLERR. libuv turns that into UV_EBADF
// and stops polling, and the binding then builds an error with a NULL `syscall` string,
// which throws a C++ exception inside a libuv callback: the process aborts (SIGABRT).
// The patch fetches the real error with SO_ERROR (which also clears it), reports it
// to JavaScript as an ordinary 'error' event (code ENOBUFS) and keeps polling, so the
// daemon can re-read the kernel state as designed. Other poll errors are reported
// with a proper syscall name instead of aborting.
//
// 2. Reading. The binding made two system calls per datagram (a MSG_PEEK for its size,
// then the read into a new allocation) and one JavaScript callback each. A 10,000-route
// burst is 10,000 datagrams: measured with a listener alone beside `ip -batch`, that
// cost about 6.5 us of CPU per event before any decoding. Now each datagram is one
// recvmsg() into a buffer kept across reads, and the datagrams of one wake-up (up to
// 32, as before) reach JavaScript in one callback, concatenated, each padded to 4 bytes
// so that the netlink messages in it stay aligned. A datagram larger than the buffer
// (64 KiB; the kernel's dump datagrams are at most 32 KiB) is lost, which MSG_TRUNC
// tells: it is reported as a 'truncatedMessage' with its size, and the buffer grows to
// take the next one whole.
//
// 3. Filters. `attachFilter(program)` attaches a classic BPF socket filter
// (SO_ATTACH_FILTER; `program` is a Buffer of 8-byte `struct sock_filter`), so a
// socket can have the kernel drop messages it does not want before they are queued.
//
// 4. Pacing. `setReading(false)` stops watching the socket for input (sending goes on)
// and `setReading(true)` resumes, so that a reader can take a stream of events in
// batches (src/kernel/pacer.ts) instead of waking up for every one of them. And one
// wake-up reads up to 1024 datagrams or 1 MiB, not 32 datagrams: after a pause the
// whole backlog comes in one callback.
//
// 5. Sending off the main thread. `sendAsync(datagram, callback)` makes the sendmsg()
// on a libuv worker thread. A request to rtnetlink is carried out inside that system
// call: a datagram of 64 KiB of route additions (~900) keeps it busy for 3.5-13 ms,
// which the event loop would otherwise spend waiting. The worker sends through a dup()
// of the socket, so closing the socket meanwhile cannot make it write to a recycled
// descriptor. Callers keep their own order: one sendAsync at a time per socket
// (src/kernel/commands.ts).
//
// 6. Buffer sizes. SO_RCVBUF and SO_SNDBUF are silently capped at net.core.rmem_max
// and wmem_max: 208 KiB on a default system, so the 4 MiB the daemon asks for became
// 416 KiB, about 500 queued events of a burst before ENOBUFS. The FORCE variants, which
// take CAP_NET_ADMIN (the daemon has it), are tried first; unprivileged callers get
// what they got before.
//
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..', 'node_modules', 'netlink');
const source = path.join(root, 'src', 'binding.cc');
const MARK = '// dynmhs: POLLERR carries ENOBUFS';
const READ_MARK = '// dynmhs: one recvmsg per datagram';

const ORIGINAL = `        if (status != 0) {
            auto error = ErrnoException(obj->Env(), -status, NULL, "error when polling socket");`;
const PATCHED = `        if (status != 0) {
            ${MARK}; read it (SO_ERROR also clears it) and keep polling.
            int pending = 0;
            socklen_t pending_len = sizeof(pending);
            if (obj->fd != -1 && getsockopt(obj->fd, SOL_SOCKET, SO_ERROR, &pending, &pending_len) == 0 && pending != 0) {
                auto error = ErrnoException(obj->Env(), pending, "recvmsg", "Error when receiving Netlink message");
                obj->error_callback.MakeCallback(obj->Value(), { error.Value() }, *obj->async_res);
                if (obj->fd != -1)
                    obj->watcher->start(obj->Env(), obj->write_queue.empty() ? UV_READABLE : (UV_READABLE | UV_WRITABLE), PollHandler);
                return;
            }
            auto error = ErrnoException(obj->Env(), -status, "poll", "error when polling socket");`;

const RECV_ORIGINAL = `    void Recvmsg() {
        // Prevent loop starvation when the data comes in as fast as (or faster than)
        // we can read it.
        int count = 32;

        while (count-- > 0) {
            std::unique_ptr<char[]> data;
            struct sockaddr_nl addr {};
            struct iovec iov {};
            struct msghdr hdr {};
            hdr.msg_name = &addr;
            hdr.msg_namelen = sizeof(addr);
            hdr.msg_iov = &iov;
            hdr.msg_iovlen = 1;
            int flags = 0;
            int size = 0;

            // if msg_buffer == 0, then peek first to determine buffer size
            iov.iov_len = msg_buffer;
            if (msg_buffer == 0) {
                char tmpBuf [1];
                iov.iov_base = tmpBuf;
                iov.iov_len = sizeof(tmpBuf);

                do {
                    size = recvmsg(fd, &hdr, flags | MSG_PEEK | MSG_TRUNC);
                } while (size == -1 && errno == EINTR);
                iov.iov_base = NULL;
                iov.iov_len = size;
            }

            // allocate buffer, perform actual read
            if (size >= 0) {
                data = std::make_unique<char[]>(iov.iov_len);
                iov.iov_base = data.get();
                if (iov.iov_len > 0 && iov.iov_base == NULL) break;

                do {
                    size = recvmsg(fd, &hdr, flags | MSG_TRUNC);
                } while (size == -1 && errno == EINTR);
            }

            // break on error (calling error_callback if needed)
            if (size == -1) {
                if (!(errno == EAGAIN || errno == EWOULDBLOCK)) {
                    Napi::Env env = Env();
                    Napi::HandleScope scope (env);
                    auto error = ErrnoException(env, errno, "recvmsg", "Error when receiving Netlink message");
                    error_callback.MakeCallback(Value(), { error.Value() }, *async_res);
                }
                break;
            }

            Napi::Env env = Env();
            Napi::HandleScope scope (env);

            // wrap result into Buffer (transferring ownership), call read_callback
            auto buf = Napi::Buffer<char>::New(env, data.release(), std::min((size_t)size, iov.iov_len), deleteFinalizer);

            auto rinfo = nlsockaddrToObject(env, addr, hdr.msg_namelen);
            if (hdr.msg_flags & MSG_TRUNC)
                rinfo["truncated"] = Napi::Number::New(env, size);

            read_callback.MakeCallback(Value(), { buf, rinfo }, *async_res);

            // callback may decide to close the socket
            if (fd == -1) break;
        }
    }

`;
const RECV_PATCHED = `    // dynmhs: one recvmsg per datagram, into rx_batch at the end of what this wake-up
    // has read so far; delivered together (see scripts/build-netlink.js in dynmhs).
    void Recvmsg() {
        // Prevent loop starvation when the data comes in as fast as (or faster than)
        // we can read it.
        int count = 32;
        size_t used = 0;
        struct sockaddr_nl last_addr {};
        if (rx_capacity == 0) rx_capacity = msg_buffer > 65536 ? msg_buffer : 65536;

        while (count-- > 0) {
            if (rx_batch.size() < used + rx_capacity) rx_batch.resize(used + rx_capacity);
            struct sockaddr_nl addr {};
            struct iovec iov {};
            struct msghdr hdr {};
            iov.iov_base = rx_batch.data() + used;
            iov.iov_len = rx_capacity;
            hdr.msg_name = &addr;
            hdr.msg_namelen = sizeof(addr);
            hdr.msg_iov = &iov;
            hdr.msg_iovlen = 1;

            int size;
            do {
                size = recvmsg(fd, &hdr, MSG_TRUNC);
            } while (size == -1 && errno == EINTR);

            if (size == -1) {
                int error_number = errno;
                Deliver(used, last_addr);
                if (fd != -1 && !(error_number == EAGAIN || error_number == EWOULDBLOCK)) {
                    Napi::Env env = Env();
                    Napi::HandleScope scope (env);
                    auto error = ErrnoException(env, error_number, "recvmsg", "Error when receiving Netlink message");
                    error_callback.MakeCallback(Value(), { error.Value() }, *async_res);
                }
                return;
            }

            if ((size_t) size > rx_capacity) {
                // Lost: say so (with its size), and make room for the next one.
                Deliver(used, last_addr);
                used = 0;
                if (fd == -1) return;
                {
                    Napi::Env env = Env();
                    Napi::HandleScope scope (env);
                    auto rinfo = nlsockaddrToObject(env, addr, hdr.msg_namelen);
                    rinfo["truncated"] = Napi::Number::New(env, size);
                    read_callback.MakeCallback(Value(), { Napi::Buffer<char>::New(env, 0), rinfo }, *async_res);
                }
                if (fd == -1) return;
                rx_capacity = ((size_t) size + 4095) & ~(size_t) 4095;
                continue;
            }

            size_t padded = ((size_t) size + 3) & ~(size_t) 3;
            memset(rx_batch.data() + used + size, 0, padded - size);
            used += padded;
            last_addr = addr;
        }
        Deliver(used, last_addr);
    }

    void Deliver(size_t used, const struct sockaddr_nl& addr) {
        if (used == 0 || fd == -1) return;
        Napi::Env env = Env();
        Napi::HandleScope scope (env);
        auto buf = Napi::Buffer<char>::Copy(env, rx_batch.data(), used);
        auto rinfo = nlsockaddrToObject(env, addr, sizeof(addr));
        read_callback.MakeCallback(Value(), { buf, rinfo }, *async_res);
    }

    void AttachFilter(const CallbackInfo& info) {
        Napi::Env env = info.Env();
        CheckOpen(env);
        if (!info[0].IsBuffer())
            throw Napi::TypeError::New(env, "attachFilter expects a Buffer of struct sock_filter");
        auto program = Napi::Buffer<char>(env, info[0]);
        size_t length = program.Length() / sizeof(struct sock_filter);
        if (length == 0 || length > BPF_MAXINSNS || program.Length() % sizeof(struct sock_filter) != 0)
            throw Napi::TypeError::New(env, "attachFilter expects 1 to 4096 instructions of 8 bytes");
        struct sock_fprog fprog {};
        fprog.len = (unsigned short) length;
        fprog.filter = reinterpret_cast<struct sock_filter*>(program.Data());
        if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)))
            throw ErrnoException(env, errno, "setsockopt", "Couldn't attach socket filter");
    }

`;

/** [marker that says the patch is in, original text, replacement]: applied in order. */
const PATCHES = [
  [MARK, ORIGINAL, PATCHED],
  [READ_MARK, RECV_ORIGINAL, RECV_PATCHED],
  ['#include <linux/filter.h>', '#include <assert.h>\n', '#include <assert.h>\n#include <string.h>\n#include <vector>\n#include <linux/filter.h>\n'],
  ['"attachFilter"', 'InstanceMethod<&Socket::GetSendBufferSize>("getSendBufferSize"),\n',
    'InstanceMethod<&Socket::GetSendBufferSize>("getSendBufferSize"),\n            InstanceMethod<&Socket::AttachFilter>("attachFilter"),\n'],
  ['std::vector<char> rx_batch;', '    bool processing = false;\n',
    '    bool processing = false;\n    std::vector<char> rx_batch;\n    size_t rx_capacity = 0;\n'],
  // 4. Pacing: the read budget, and setReading().
  ['// dynmhs: read budget', '        int count = 32;\n        size_t used = 0;\n',
    '        // dynmhs: read budget: a paused reader takes its whole backlog at once.\n        int count = 1024;\n        size_t used = 0;\n'],
  ['while (count-- > 0 && used < ', '        while (count-- > 0) {\n            if (rx_batch.size()',
    '        while (count-- > 0 && used < ((size_t) 1 << 20)) {\n            if (rx_batch.size()'],
  ['if (events == 0) { uv_poll_stop', '    void start(Napi::Env env, int events, uv_poll_cb cb) {\n',
    '    void start(Napi::Env env, int events, uv_poll_cb cb) {\n        if (events == 0) { uv_poll_stop(&handle); return; }\n'],
  ['(reading ? UV_READABLE : 0) | UV_WRITABLE', 'watcher->start(env, UV_READABLE | UV_WRITABLE, PollHandler);',
    'watcher->start(env, (reading ? UV_READABLE : 0) | UV_WRITABLE, PollHandler);'],
  ['(obj->reading ? UV_READABLE : 0)', 'obj->watcher->start(obj->Env(), obj->write_queue.empty() ? UV_READABLE : (UV_READABLE | UV_WRITABLE), PollHandler);',
    'obj->watcher->start(obj->Env(), (obj->reading ? UV_READABLE : 0) | (obj->write_queue.empty() ? 0 : UV_WRITABLE), PollHandler);'],
  ['watcher->start(Env(), reading ? UV_READABLE : 0', '            watcher->start(Env(), UV_READABLE, PollHandler);\n            // XXX',
    '            watcher->start(Env(), reading ? UV_READABLE : 0, PollHandler);\n            // XXX'],
  ['"setReading"', 'InstanceMethod<&Socket::AttachFilter>("attachFilter"),\n',
    'InstanceMethod<&Socket::AttachFilter>("attachFilter"),\n            InstanceMethod<&Socket::SetReading>("setReading"),\n'],
  ['void SetReading(', '    void AttachFilter(const CallbackInfo& info) {\n',
    `    void SetReading(const CallbackInfo& info) {
        Napi::Env env = info.Env();
        CheckOpen(env);
        reading = info[0].ToBoolean();
        watcher->start(env, (reading ? UV_READABLE : 0) | (write_queue.empty() ? 0 : UV_WRITABLE), PollHandler);
    }

    void AttachFilter(const CallbackInfo& info) {
`],
  ['bool reading = true;', '    size_t rx_capacity = 0;\n', '    size_t rx_capacity = 0;\n    bool reading = true;\n'],
  // 5. sendAsync().
  ['"sendAsync"', 'InstanceMethod<&Socket::SetReading>("setReading"),\n',
    'InstanceMethod<&Socket::SetReading>("setReading"),\n            InstanceMethod<&Socket::SendAsync>("sendAsync"),\n'],
  ['void SendAsync(', '    void SetReading(const CallbackInfo& info) {\n',
    `    void SendAsync(const CallbackInfo& info) {
        Napi::Env env = info.Env();
        CheckOpen(env);
        if (!info[0].IsBuffer() || !info[1].IsFunction())
            throw Napi::TypeError::New(env, "sendAsync expects a Buffer and a callback");
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy == -1)
            throw ErrnoException(env, errno, "fcntl", "Couldn't duplicate the netlink socket");
        auto callback = info[1].As<Napi::Function>();
        (new SendWorker(callback, info[0].As<Napi::Buffer<char>>(), copy))->Queue();
    }

    void SetReading(const CallbackInfo& info) {
`],
  ['class SendWorker', 'class Socket : public Napi::ObjectWrap<Socket> {\n',
    `// dynmhs: sendmsg() to the kernel on a libuv worker thread, through a duplicate of the socket.
class SendWorker : public Napi::AsyncWorker {
  public:
    SendWorker(Napi::Function& callback, Napi::Buffer<char> data, int fd)
        : Napi::AsyncWorker(callback, "netlink:sendAsync"), fd(fd), data(data.Data()), length(data.Length()),
          keep(Napi::Persistent(data.As<Napi::Object>())) {}
    ~SendWorker() { close(fd); }
    void Execute() override {
        struct sockaddr_nl addr {};
        addr.nl_family = AF_NETLINK;
        struct iovec iov { data, length };
        struct msghdr msg {};
        msg.msg_name = &addr;
        msg.msg_namelen = sizeof(addr);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        ssize_t size;
        do {
            size = sendmsg(fd, &msg, 0);
        } while (size == -1 && errno == EINTR);
        error_number = size == -1 ? errno : 0;
    }
    void OnOK() override {
        Napi::Env env = Env();
        Napi::HandleScope scope (env);
        if (error_number == 0) Callback().Call({ env.Undefined() });
        else Callback().Call({ ErrnoException(env, error_number, "sendmsg", "Error when sending Netlink message").Value() });
    }
  private:
    int fd;
    char* data;
    size_t length;
    int error_number = 0;
    Napi::ObjectReference keep;
};

class Socket : public Napi::ObjectWrap<Socket> {
`],
  ['#include <fcntl.h>', '#include <assert.h>\n', '#include <assert.h>\n#include <fcntl.h>\n'],
  // 6. Buffer sizes past rmem_max / wmem_max when privileged.
  ['// dynmhs: forced receive buffer',
    '        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)))\n',
    '        // dynmhs: forced receive buffer: past rmem_max with CAP_NET_ADMIN, else capped as before.\n'
    + '        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size))\n'
    + '            && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)))\n'],
  ['// dynmhs: forced send buffer',
    '        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)))\n',
    '        // dynmhs: forced send buffer: past wmem_max with CAP_NET_ADMIN, else capped as before.\n'
    + '        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size))\n'
    + '            && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)))\n'],
];

function main() {
  if (!fs.existsSync(source)) {
    console.error('build-netlink: node_modules/netlink is missing; run npm install first');
    process.exit(1);
  }
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  if (version !== '0.3.0') {
    console.error(`build-netlink: netlink ${version} found, the patch is for 0.3.0; check it still applies`);
    process.exit(1);
  }
  let text = fs.readFileSync(source, 'utf8');
  let changed = false;
  for (const [marker, original, patched] of PATCHES) {
    if (text.includes(marker)) continue;
    if (!text.includes(original)) {
      console.error(`build-netlink: binding.cc does not look like netlink 0.3.0 (no place for "${marker}"); patch not applied`);
      process.exit(1);
    }
    text = text.replace(original, patched);
    changed = true;
  }
  if (changed) fs.writeFileSync(source, text);
  const built = path.join(root, 'build', 'Release', 'netlink_binding.node');
  if (fs.existsSync(built) && fs.statSync(built).mtimeMs >= fs.statSync(source).mtimeMs) return;
  const gyp = findNodeGyp();
  console.log('build-netlink: building the patched netlink binding (once)');
  // Build against the installed Node's headers: there is no network to download them.
  const nodedir = process.env.npm_config_nodedir
    || [path.join(path.dirname(process.execPath), '..'), '/usr', '/usr/local'].find((d) => fs.existsSync(path.join(d, 'include', 'node', 'node_api.h')));
  const args = [gyp, 'rebuild', '--loglevel=warn'];
  if (nodedir !== undefined) args.push(`--nodedir=${nodedir}`);
  execFileSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
}

/** npm's own node-gyp: npm passes its path when it runs scripts; else next to npm on PATH. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  for (const dir of (process.env.PATH || '').split(':')) {
    const npm = path.join(dir, 'npm');
    if (fs.existsSync(npm)) candidates.push(path.join(path.dirname(fs.realpathSync(npm)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const found = candidates.find((c) => c !== undefined && c !== '' && fs.existsSync(c));
  if (found === undefined) {
    console.error('build-netlink: node-gyp not found (it comes with npm)');
    process.exit(1);
  }
  return found;
}

main();
