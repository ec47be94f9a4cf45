import { Column, Entity, PrimaryGeneratedColumn, type ColumnOptions } from 'typeorm';

@Entity('shop_accounts')
export class Account {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) credits!: number;
}

@Entity('shop_orders')
export class Order {
  @PrimaryGeneratedColumn() id!: number;
  @Column({ type: 'int' }) accountId!: number;
  @Column({ type: 'int' }) price!: number;
  @Column({ type: 'boolean', width: 1, default: false } as ColumnOptions) paid!: boolean; // width: TypeORM 0.3 on MariaDB reads BOOLEAN back as tinyint(1)
}
