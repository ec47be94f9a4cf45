import { expect } from 'chai';
import { Column, Entity, PrimaryGeneratedColumn, VersionColumn } from 'typeorm';
import { LockConfigError, StaleEntityError, transaction, versioned } from '../../src';
import { lockMetadataOf } from '../../src/metadata/registry';
import { describeEachBackend } from '../support/suite';

/** Declared @Versioned only after installLocking ran (no other class here is @Versioned at install). */
@Entity('cov_late_counters')
class LateCounter {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int', default: 0 }) value!: number;
  @VersionColumn() version!: number;
}

@Entity('cov_late_unversioned')
class LateNoVersion {
  @PrimaryGeneratedColumn() id!: number;
}

describeEachBackend('coverage: a declaration made after installLocking takes effect', [LateCounter, LateNoVersion], (env) => {
  /** Two copies loaded before either saves: the second save is the lost update. */
  async function secondSaveOfTwo(): Promise<unknown> {
    const repo = env.ds.getRepository(LateCounter);
    const { id } = await repo.save(repo.create({ value: 0 }));
    const a = await repo.findOneByOrFail({ id });
    const b = await repo.findOneByOrFail({ id });
    a.value += 1;
    await repo.save(a);
    b.value += 1;
    return transaction(() => repo.save(b)).then(
      () => undefined,
      (e) => e,
    );
  }

  it('[coverage install late-versioned] versioned(X) after installLocking checks the version from then on; before it, the second of two saves overwrote the first', async () => {
    expect(await secondSaveOfTwo(), 'control: not declared yet').to.equal(undefined);
    versioned(LateCounter);
    try {
      expect(await secondSaveOfTwo()).to.be.instanceOf(StaleEntityError);
    } finally {
      delete (lockMetadataOf(LateCounter) as { versioned?: unknown }).versioned;
    }
  });

  it('[coverage install late-refused] a late declaration the installed DataSource refuses (no version column) throws LockConfigError naming it, and is undone', () => {
    expect(() => versioned(LateNoVersion)).to.throw(LockConfigError, /LateNoVersion/);
    expect(lockMetadataOf(LateNoVersion)?.versioned).to.equal(undefined);
  });
});
