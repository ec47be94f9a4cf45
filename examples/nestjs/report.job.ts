import { Injectable, type OnModuleInit } from '@nestjs/common';
import { Cron, CronExpression } from '@nestjs/schedule';
import { InjectDataSource } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { ScheduledLock, createScheduledLockTable } from '../../src'; // in your app: from 'ormlock'

/** One run of a job, as the example logs it: which job, for which second, on which instance. */
@Entity('report_runs')
export class ReportRun {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'varchar', length: 20 }) job!: string;
  @Column({ type: 'bigint' }) second!: string;
  @Column({ type: 'int' }) instance!: number;
}

/** Which instance of the application this is (the example starts several in one process). */
export const INSTANCE = 'INSTANCE';

/**
 * A report every second, on every instance of the application. `@ScheduledLock` under `@Cron`
 * makes it run on one instance per tick: the others find the lock taken and skip that tick.
 * (`@Cron` goes above `@ScheduledLock`: it marks the method `@ScheduledLock` returns.)
 * `control` is the same job without the lock: every instance runs every tick.
 */
@Injectable()
export class ReportJob implements OnModuleInit {
  constructor(
    @InjectDataSource() readonly dataSource: DataSource,
    private readonly instance: number,
  ) {}

  async onModuleInit(): Promise<void> {
    await createScheduledLockTable(this.dataSource); // or its migration: see docs/scheduled-locks.md
  }

  @Cron(CronExpression.EVERY_SECOND)
  @ScheduledLock('report', {
    lockAtMostFor: 30_000, // a crashed instance frees the job after 30 s
    lockAtLeastFor: 500, // instances whose clocks differ by less than 0.5 s still run a tick once
    dataSource: (self: ReportJob) => self.dataSource, // several DataSources are installed in this process
  })
  async report(): Promise<void> {
    await this.log('report');
  }

  @Cron(CronExpression.EVERY_SECOND)
  async control(): Promise<void> {
    await this.log('control');
  }

  private async log(job: string): Promise<void> {
    const second = String(Math.round(Date.now() / 1000)); // the tick the cron fired for
    await this.dataSource.getRepository(ReportRun).insert({ job, second, instance: this.instance });
  }
}
