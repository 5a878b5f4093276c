// Condition helpers per the Kubernetes API conventions, after cert-manager's pkg/api/util/conditions.go:
// lastTransitionTime moves only when a condition's status flips, observedGeneration is always set, reasons are
// CamelCase, and statusChanged() tells a reconciler whether a status write is needed at all.

import type { Condition } from './types.js';

export type ConditionStatus = Condition['status'];

/** What a reconciler decides; setCondition fills in lastTransitionTime and observedGeneration. */
export interface ConditionInput {
  type: string;
  status: ConditionStatus;
  /** CamelCase, e.g. "SecretConflict", "RoleNotAllowed". */
  reason: string;
  message: string;
}

/**
 * Reasons are CamelCase words, one token a program can switch on: an upper-case letter, then letters and digits.
 * (Stricter than the API server's `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`.)
 */
export const REASON_PATTERN = /^[A-Z][A-Za-z0-9]*$/;
const MAX_REASON_LENGTH = 1024;
/** metav1.Condition caps message at 32768 characters; a longer one makes the status write fail. */
export const MAX_MESSAGE_LENGTH = 32768;

/** Throws a TypeError if reason is not CamelCase; a bad reason is a programming error, caught by unit tests. */
export function assertReason(reason: string): void {
  if (reason.length > MAX_REASON_LENGTH || !REASON_PATTERN.test(reason)) {
    throw new TypeError(`condition reason must be CamelCase, got ${JSON.stringify(reason)}`);
  }
}

/** metav1.Time form: RFC 3339 UTC with whole seconds, as the API server stores and returns it. */
export function formatConditionTime(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

export function getCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return getCondition(conditions, type)?.status === 'True';
}

/**
 * Returns a new list with the condition of input.type set (in place if present, else appended). Its
 * lastTransitionTime stays unless the status flips; a new reason or message alone keeps the old time.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  observedGeneration: number | undefined,
  now: Date,
): Condition[] {
  assertReason(input.reason);
  const existing = getCondition(conditions, input.type);
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: truncateMessage(input.message),
    lastTransitionTime:
      existing !== undefined && existing.status === input.status
        ? existing.lastTransitionTime
        : formatConditionTime(now),
  };
  if (observedGeneration !== undefined) next.observedGeneration = observedGeneration;
  const list = conditions ?? [];
  return existing === undefined ? [...list, next] : list.map((c) => (c.type === input.type ? next : c));
}

export function removeCondition(conditions: readonly Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((c) => c.type !== type);
}

/** Same conditions, compared by type (list order and key order ignored). */
export function conditionsEqual(a: readonly Condition[] | undefined, b: readonly Condition[] | undefined): boolean {
  const left = a ?? [];
  const right = b ?? [];
  if (left.length !== right.length) return false;
  return left.every((c) => {
    const other = getCondition(right, c.type);
    return other !== undefined && deepEqual(c, other);
  });
}

/**
 * Whether writing newStatus would change what the API server holds: a deep comparison that ignores key order
 * and properties set to undefined (JSON drops them); a missing status equals an empty one. Conditions are
 * compared by type, so their order does not matter.
 */
export function statusChanged<T extends object>(oldStatus: T | undefined, newStatus: T | undefined): boolean {
  return !deepEqual(oldStatus ?? {}, newStatus ?? {});
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item: unknown, i) => deepEqual(item, b[i]));
  }
  if (!isPlainRecord(a) || !isPlainRecord(b)) return false;
  const keys = new Set([...definedKeys(a), ...definedKeys(b)]);
  for (const key of keys) {
    if (key === 'conditions' && Array.isArray(a[key]) && Array.isArray(b[key])) {
      if (!conditionsEqual(a[key] as Condition[], b[key] as Condition[])) return false;
    } else if (!deepEqual(a[key], b[key])) {
      return false;
    }
  }
  return true;
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function definedKeys(record: Record<string, unknown>): string[] {
  return Object.keys(record).filter((k) => record[k] !== undefined);
}

function truncateMessage(message: string): string {
  return message.length <= MAX_MESSAGE_LENGTH ? message : `${message.slice(0, MAX_MESSAGE_LENGTH - 3)}...`;
}
