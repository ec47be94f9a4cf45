/**
 * The type of a decorator whose key is a function of the decorated method's arguments: the key
 * function's parameters must accept the method's first arguments, so
 * `@AdvisoryLock((day: number) => …)` on `job(day: string)` does not compile.
 */
export type KeyFunctionArgs<K> = K extends (...args: infer A) => unknown ? A : any[];

/** A method whose first arguments are `A` (then any others). */
export type MethodTaking<A extends any[]> = (...args: [...A, ...any[]]) => any;

/** On an entity class (the key is a function of the entity) and on a method taking the key function's arguments. */
export interface KeyedClassOrMethodDecorator<A extends any[]> {
  (target: Function): void;
  <T extends MethodTaking<A>>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<T>): TypedPropertyDescriptor<T> | void;
}

/** On a method taking the key function's arguments. */
export type KeyedMethodDecorator<A extends any[]> = <T extends MethodTaking<A>>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<T>,
) => TypedPropertyDescriptor<T> | void;
