import { Repository } from 'typeorm';
import { ambientRunner } from '../../context/store';

const OWN_MANAGER = Symbol('ormlock.ownManager');
let patched = false;

/**
 * Makes every Repository — also one obtained before the transaction began, or injected in a
 * constructor — use the ambient transaction's manager of its own DataSource. TypeORM assigns
 * `this.manager` in the constructor, so an accessor on the prototype sees every instance.
 */
export function patchRepositoryManager(): void {
  if (patched) return;
  patched = true;
  Object.defineProperty(Repository.prototype, 'manager', {
    configurable: true,
    enumerable: true,
    get(this: Record<symbol, any>) {
      const own = this[OWN_MANAGER];
      const ambient = own?.dataSource ? ambientRunner(own.dataSource) : undefined;
      return ambient ? ambient.manager : own;
    },
    set(this: Record<symbol, any>, manager: unknown) {
      this[OWN_MANAGER] = manager;
    },
  });
}
