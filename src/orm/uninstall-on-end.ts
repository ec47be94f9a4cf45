/**
 * Uninstall when the ORM instance ends, shared by the adapters: `dataSource.destroy()` and
 * `orm.close()` first uninstall ormlock, so that an ended instance never stays installed.
 */
import { replaceMethod } from './patching';

/** `target[method](…)` first runs `uninstall` (then `after`, if given), then the original; returns the undo. */
export function uninstallOnEnd(target: object, method: string, uninstall: () => void, after?: () => void): () => void {
  return replaceMethod(
    target,
    method,
    (base: (...args: unknown[]) => unknown) =>
      function (this: unknown, ...args: unknown[]) {
        uninstall();
        after?.();
        return base.apply(this, args);
      },
  );
}
