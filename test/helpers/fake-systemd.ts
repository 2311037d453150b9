// A stand-in for org.freedesktop.systemd1 on a private bus: just what src/systemd-job.ts
// reads (Manager.GetUnitByPID, the unit's Job property, the job's JobType), with the job
// of each process set by the test. Real systemd job semantics (a restart job that turns
// into a start job once the old process is gone) are proven under systemd PID 1 by the
// container tests; this fake proves what the daemon does with each answer.
import { Message, Variant, sessionBus, type MessageBus } from 'dbus-next';

// dbus-next's typings declare newError's first parameter a string; it takes the call.
const newError = Message.newError as unknown as (call: Message, name: string, text: string) => Message;

export const FAKE_UNIT_PATH = '/org/freedesktop/systemd1/unit/dynmhs_2eservice';
const JOB_PATH_PREFIX = '/org/freedesktop/systemd1/job/';

/** What the fake answers about a process: a job of this type, no job, or no answer at all. */
export type FakeJob = 'restart' | 'stop' | 'start' | 'none' | 'silent';

export class FakeSystemd {
  /** The processes of the unit; any other PID is in no unit (NoUnitForPID). */
  readonly unitPids = new Set<number>();
  /** The unit's job, as the test sets it. */
  job: FakeJob = 'none';
  /** Every call received, as "Member" or "Get Interface.Property", for assertions. */
  readonly calls: string[] = [];
  private jobSeq = 40;

  private constructor(private readonly bus: MessageBus) {}

  static async start(address: string): Promise<FakeSystemd> {
    const bus = sessionBus({ busAddress: address });
    bus.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      bus.once('connect', () => resolve());
      bus.once('error', (error: unknown) => reject(error));
    });
    const fake = new FakeSystemd(bus);
    bus.addMethodHandler((msg: Message) => fake.handle(msg));
    const reply = await bus.requestName('org.freedesktop.systemd1', 0x4);
    if (reply !== 1) throw new Error(`could not own org.freedesktop.systemd1 (reply ${reply})`);
    return fake;
  }

  stop(): void {
    try { this.bus.disconnect(); } catch { /* gone */ }
  }

  private handle(msg: Message): boolean {
    if (msg.member === 'GetUnitByPID' && msg.interface === 'org.freedesktop.systemd1.Manager') {
      const pid = msg.body[0] as number;
      this.calls.push('GetUnitByPID');
      if (this.job === 'silent') return true;
      if (!this.unitPids.has(pid)) {
        this.bus.send(newError(msg, 'org.freedesktop.systemd1.NoUnitForPID', `PID ${pid} does not belong to any loaded unit.`));
      } else {
        this.bus.send(Message.newMethodReturn(msg, 'o', [FAKE_UNIT_PATH]));
      }
      return true;
    }
    if (msg.member === 'Get' && msg.interface === 'org.freedesktop.DBus.Properties') {
      const [iface, property] = msg.body as [string, string];
      this.calls.push(`Get ${iface}.${property}`);
      const job = this.job;
      if (msg.path === FAKE_UNIT_PATH && property === 'Job') {
        const value = job === 'none' ? [0, '/'] : [++this.jobSeq, `${JOB_PATH_PREFIX}${this.jobSeq}`];
        this.bus.send(Message.newMethodReturn(msg, 'v', [new Variant('(uo)', value)]));
        return true;
      }
      if (msg.path.startsWith(JOB_PATH_PREFIX) && property === 'JobType') {
        this.bus.send(Message.newMethodReturn(msg, 'v', [new Variant('s', job)]));
        return true;
      }
      this.bus.send(newError(msg, 'org.freedesktop.DBus.Error.UnknownProperty', `no ${iface}.${property} on ${msg.path}`));
      return true;
    }
    return false;
  }
}
