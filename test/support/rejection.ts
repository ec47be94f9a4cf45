/** The reason `promise` rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<any> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** The reasons of the rejected ones among `results` (settled results, as `race` returns them). */
export function reasons(results: PromiseSettledResult<unknown>[]): any[] {
  return results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason);
}
