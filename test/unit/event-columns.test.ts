// An event table's rows as columns (processor/src/event-columns.ts): what a view reads back,
// a join set through a view, a field whose type changes between events, and the copies a
// rejected insert (select) and a shared statement (concat) make. The Native block copied
// from columns is compared with the row pass on the real tables in
// test/integration/event-columns-native.test.ts.
import { describe, expect, it } from 'vitest';
import { EventColumns, kindLayout } from '../../processor/src/event-columns.js';
import { HOST_JOIN, joinedIdentity } from '../../processor/src/join-identity.js';
import type { ContainerMeta } from '../../processor/src/metadata-table.js';
import {
  type DecodedEvent,
  type DecodedEventBatch,
  flatRow,
  type MessageSource,
  messageSource,
  UNJOINED,
} from '../../processor/src/rows.js';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

function sample(over: Record<string, unknown> = {}): DecodedEvent {
  return {
    kind: 'test_sample',
    tsNs: 5n,
    cgroupId: 42n,
    pid: 7,
    tgid: 7,
    comm: 'sh',
    rxBytes: 9_007_199_254_740_993n,
    ...over,
  } as DecodedEvent;
}

function source(offset: string, node = 'n1'): MessageSource {
  const batch: DecodedEventBatch = {
    node,
    bootId: 'b1',
    collectorVersion: 't',
    sequence: 1n,
    producedAtNs: 1n,
    bootEpochNs: 0n,
    events: [],
  };
  return messageSource(batch, 2, offset, false);
}

const container = { containerId: 'c1', name: 'web', image: 'img', labels: {} } as unknown as ContainerMeta;

describe('EventColumns', () => {
  it('reads each row back through a view as the row it was built from', () => {
    const cols = new EventColumns(kindLayout(sample()));
    const src = source('10');
    cols.add(src, sample(), 100n, 0);
    cols.add(src, sample({ rxBytes: U64_MAX, comm: 'ünï', pid: 0 }), 200n, 1);
    expect(cols.length).toBe(2);
    const [a, b] = cols.views();
    expect(flatRow(a as object)).toMatchObject({
      node: 'n1',
      boot_id: 'b1',
      time: 100n,
      kafka_partition: 2,
      kafka_offset: '10',
      join_state: 'pending',
      container_id: '',
      ts_ns: 5,
      cgroup_id: 42,
      pid: 7,
      comm: 'sh',
      rx_bytes: '9007199254740993',
    });
    expect(b?.columns).toMatchObject({ rx_bytes: '18446744073709551615', comm: 'ünï', pid: 0, time: 200n });
    expect(b?.index).toBe(1);
    expect(b?.$src).toBe(src);
  });

  it('joins a row in place, through its view or its index', () => {
    const cols = new EventColumns(kindLayout(sample()));
    cols.add(source('1'), sample(), 1n, 0);
    cols.add(source('1'), sample(), 2n, 1);
    const view = cols.view(0);
    expect(view.$id).toBe(UNJOINED);
    view.$id = joinedIdentity(container);
    cols.setJoin(1, HOST_JOIN);
    expect(cols.view(0).columns).toMatchObject({
      join_state: 'joined',
      container_id: 'c1',
      container_name: 'web',
    });
    expect(cols.view(0).meta).toBe(container);
    expect(cols.view(1).columns).toMatchObject({ join_state: 'host', workload: 'host' });
    expect(cols.identities).toHaveLength(3); // UNJOINED, the container's, the host's: one slot each
  });

  it('takes an event whose field is of another type than the first, keeping the rows before it', () => {
    const cols = new EventColumns(kindLayout(sample()));
    cols.add(source('1'), sample(), 1n, 0);
    cols.add(source('1'), sample({ pid: 'not a number', rxBytes: -1n }), 2n, 1);
    cols.add(source('1'), sample({ pid: 9 }), 3n, 2);
    expect(cols.views().map((v) => [v.columns.pid, v.columns.rx_bytes])).toEqual([
      [7, '9007199254740993'],
      ['not a number', -1],
      [9, '9007199254740993'],
    ]);
  });

  it('copies chosen rows (select) and whole tables (concat) with their messages and joins', () => {
    const layout = kindLayout(sample());
    const a = new EventColumns(layout);
    const b = new EventColumns(layout);
    for (let i = 0; i < 300; i++) a.add(source(String(i)), sample({ pid: i }), BigInt(i), 0);
    b.add(source('900', 'n2'), sample({ comm: 'b' }), 900n, 0);
    b.setJoin(0, joinedIdentity(container));
    a.setJoin(299, HOST_JOIN);
    const picked = a.select([a.view(3), a.view(299)]);
    expect(picked.views().map((v) => [v.columns.pid, v.columns.kafka_offset, v.columns.join_state])).toEqual([
      [3, '3', 'pending'],
      [299, '299', 'host'],
    ]);
    expect(() => a.select([b.view(0)])).toThrow(/not a view of these columns/);
    const both = EventColumns.concat([picked, b]);
    expect(both.views().map(flatRow)).toEqual([...picked.views(), ...b.views()].map(flatRow));
    expect(both.view(2).meta).toBe(container);
    // A part whose field took another type: the copy takes any value there too.
    const odd = new EventColumns(layout);
    odd.add(source('5'), sample({ pid: 'x' }), 5n, 0);
    const mixed = EventColumns.concat([b, odd, b]);
    expect(mixed.views().map((v) => v.columns.pid)).toEqual([7, 'x', 7]);
    expect(mixed.views().map((v) => v.columns.kafka_offset)).toEqual(['900', '5', '900']);
  });
});
