// What a list holds. Every replica of a library must agree on this: change it only by adding a
// new version with a migration, never by editing version 1.
import { createMigration, id, schema } from '@verdant-web/store';

const items = schema.collection({
  name: 'item',
  primaryKey: 'id',
  fields: {
    id: schema.fields.string({ default: () => id() }),
    text: schema.fields.string(),
    done: schema.fields.boolean({ default: false }),
    image: schema.fields.file({ nullable: true }), // uploaded to flask-verdant's file routes
    createdAt: schema.fields.number({ default: () => Date.now() }),
  },
});

export const todoSchema = schema({ version: 1, collections: { items } });
export const migrations = [createMigration(todoSchema)];
