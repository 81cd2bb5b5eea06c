import { EventType } from '../../gql/graphql';

const ALL_TYPES = Object.values(EventType);
const GROUPS = ['TASK', 'AGENT', 'WORKFLOW'] as const;

interface Props {
  selected: EventType[];
  onChange: (types: EventType[]) => void;
}

/** Chips for each event type, grouped by entity; none selected means all. */
export function EventTypeFilter({ selected, onChange }: Props) {
  const toggle = (type: EventType) =>
    onChange(selected.includes(type) ? selected.filter((t) => t !== type) : [...selected, type]);

  return (
    <fieldset className="filter">
      <legend>Filter by type</legend>
      <button
        type="button"
        className={selected.length === 0 ? 'chip on' : 'chip'}
        onClick={() => onChange([])}
      >
        all
      </button>
      {GROUPS.map((group) => (
        <div className="chip-group" key={group}>
          <span className="chip-group-name">{group.toLowerCase()}</span>
          <span className="chips">
            {ALL_TYPES.filter((type) => type.startsWith(`${group}_`)).map((type) => (
              <label key={type} className={selected.includes(type) ? 'chip on' : 'chip'}>
                <input
                  type="checkbox"
                  checked={selected.includes(type)}
                  onChange={() => toggle(type)}
                  data-event-type={type}
                />
                {type
                  .slice(group.length + 1)
                  .toLowerCase()
                  .replace(/_/g, ' ')}
              </label>
            ))}
          </span>
        </div>
      ))}
    </fieldset>
  );
}
