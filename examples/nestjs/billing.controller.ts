import { BadRequestException, Body, Controller, Get, HttpCode, Param, ParseIntPipe, Post, Query, ServiceUnavailableException } from '@nestjs/common';
import { BillingService, type ChargeMode } from './billing.service';

const MODES: ChargeMode[] = ['none', 'row', 'advisory', 'lease'];

@Controller('accounts')
export class BillingController {
  constructor(private readonly billing: BillingService) {}

  /** POST /accounts { credits, orders, price } → the account and its unpaid orders. */
  @Post()
  open(@Body() body: { credits?: number; orders?: number; price?: number }) {
    return this.billing.open(Number(body.credits ?? 1000), Number(body.orders ?? 20), Number(body.price ?? 10));
  }

  @Get(':id')
  account(@Param('id', ParseIntPipe) id: number) {
    return this.billing.account(id);
  }

  /** POST /accounts/:id/orders/:orderId/charge?lock=none|row|advisory|lease */
  @Post(':id/orders/:orderId/charge')
  @HttpCode(204)
  async charge(@Param('id', ParseIntPipe) id: number, @Param('orderId', ParseIntPipe) orderId: number, @Query('lock') lock = 'row'): Promise<void> {
    if (!MODES.includes(lock as ChargeMode)) throw new BadRequestException(`lock must be one of ${MODES.join(', ')}`);
    if (lock === 'lease' && !this.billing.redlock) throw new ServiceUnavailableException('lock=lease needs a Redis: start the app with REDIS_URL=redis://…');
    await this.billing.charge(lock as ChargeMode, id, orderId);
  }
}
