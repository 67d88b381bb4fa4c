/**
 * Example inputs of the demo page.
 *
 * @module
 */

/** MRs of the E2E test set, offered when no data folder is served (and decoded by the benchmark). */
export const EXAMPLE_MRS: readonly string[] = [
  "name : Blue Spice | Type : coffee shop | area : city centre",
  "name : Blue Spice | Type : restaurant | food : Chinese | area : city centre | family friendly : yes | near : Rainbow Vegetarian Café",
  "name : Giraffe | Type : pub | near : The Rice Boat",
  "name : The Mill | Type : pub | food : Fast food | price : cheap | customer rating : average | area : city centre | family friendly : yes | near : Café Sicilia",
  "name : The Punter | Type : restaurant | food : Indian | price : moderate | customer rating : 3 out of 5 | area : city centre | family friendly : no | near : Express by Holiday Inn",
];
