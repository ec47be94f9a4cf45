export { race, values, Barrier } from './race';
