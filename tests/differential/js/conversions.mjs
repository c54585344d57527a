// Oracle for the JS conversions in flask_verdant.jsvalue: reads
// {"numbers": [...], "values": [...]} (file argument or stdin) and prints how
// Node writes each number (String, JSON.stringify) and converts each value
// (Number(), String(), as a property key). -0 is reported as "-0".
import { readFileSync } from 'node:fs';

const show = (n) => (Object.is(n, -0) ? '-0' : String(n));
const attempt = (fn) => {
	try {
		return fn();
	} catch (err) {
		return `!${err.constructor.name}`;
	}
};

const input = JSON.parse(readFileSync(process.argv[2] ?? 0, 'utf8'));
const output = {
	numbers: input.numbers.map((n) => [String(n), JSON.stringify(n)]),
	values: input.values.map((v) => [
		attempt(() => show(Number(v))),
		attempt(() => String(v)),
		attempt(() => {
			const o = {};
			o[v] = 1;
			return Object.keys(o)[0];
		}),
	]),
};
process.stdout.write(JSON.stringify(output));
