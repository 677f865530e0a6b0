// src/settle.ts: settleFields() rewrites the fields it is given with their own
// values (so V8 marks them variable early) and refuses a name the object does
// not have, which would otherwise add a field and change the object's shape.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { settleFields } from '../src/settle.ts'

class Example {
  closed = false
  head = 7
  readonly list: number[] = [1, 2]
  constructor () { settleFields(this, 'closed', 'head', 'list') }
}

test('settleFields keeps every value and adds no property', () => {
  const e = new Example()
  assert.deepEqual(Object.entries(e), [['closed', false], ['head', 7], ['list', [1, 2]]])
  e.closed = true
  assert.equal(e.closed, true)
})

test('settleFields throws TypeError for a name that is not an own field of the object', () => {
  const o = { a: 1 }
  assert.throws(() => { settleFields(o, 'a', 'b') }, (err: unknown) => err instanceof TypeError && /no field b/.test(err.message))
  // Inherited (here a getter of the class): not a field of the object.
  assert.throws(() => { settleFields(new (class { get g (): number { return 1 } })(), 'g') }, TypeError)
  assert.deepEqual(Object.keys(o), ['a'])
})
