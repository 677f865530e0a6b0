// What the packets that have begun to arrive and are not yet whole hold in
// memory, over every connection of one Messaging. A connection alone is bounded
// by maxPacketSize, but there may be a thousand of them: without a common limit,
// remotes that each send most of a large packet and stop could make this side
// hold maxPacketSize per connection.

/** One connection's share: what its unfinished packet holds, and how to drop it. */
export interface BudgetMember {
  /** Bytes its unfinished packet holds now, as last reported with ReceiveBudget.update(). */
  held: number
  /** Drops the unfinished packet and closes the connection: the budget is over and it holds the most. */
  overBudget (total: number, limit: number): void
}

export class ReceiveBudget {
  /** Bytes held over all members. */
  total = 0
  private readonly members = new Set<BudgetMember>()

  constructor (readonly limit: number) {}

  join (m: BudgetMember): void { this.members.add(m) }

  /** The member's connection is gone: what it held is no longer counted. */
  leave (m: BudgetMember): void {
    if (!this.members.delete(m)) return
    this.total -= m.held
    m.held = 0
  }

  /**
   * `m` now holds `held` bytes. While the total is over the limit, the member
   * holding the most is told to drop what it holds (it leaves); `m` itself may be
   * that member.
   */
  update (m: BudgetMember, held: number): void {
    // One that left (its connection cut or gone) counts no more, whatever it still reports.
    if (!this.members.has(m)) return
    this.total += held - m.held
    m.held = held
    while (this.total > this.limit) {
      let largest: BudgetMember | null = null
      for (const x of this.members) if (largest === null || x.held > largest.held) largest = x
      // One connection alone is bounded by maxPacketSize (and, over WebSocket, by
      // the message its transport assembles besides): it is never cut, so one
      // packet of maxPacketSize always gets through, whatever the transport.
      if (largest === null || largest.held === 0 || largest.held === this.total) return
      const total = this.total
      this.leave(largest)
      largest.overBudget(total, this.limit)
    }
  }
}
